"""The Flex Template's entry point (FLEX_TEMPLATE_PYTHON_PY_FILE): the launcher runs it at each
launch with the template's parameters as --name=value; it is `newsbeam run` over them."""

import sys

from newsbeam.pipelines.flex_template import launch

if __name__ == "__main__":
    sys.exit(launch(sys.argv[1:]))
