"""Config files: `newsbeam run --config FILE` reads its options from a YAML mapping.

    input: [news/, "archive/2022-*.jsonl.gz"]   # a repeatable flag takes a list (or one value)
    output: datasets/news                       # a relative path is relative to this file
    allow_loopback: true                        # a flag without a value takes true or false
    runner: FnApiRunner                         # Beam's options as well as newsbeam's
    direct_num_workers: 2

A key is a flag's name without its dashes. Flags on the command line win over the file: a key
given there is not read from the file at all (a repeatable flag's list is replaced, not
extended). An unknown key, or a value of the wrong kind, is refused with the file and key named.

The file becomes command-line words placed before the command line's own, so argparse and Beam
read it exactly as they read flags. Any subcommand that takes PipelineOptions can use it: it
hands over a function that builds the parser of every flag it takes.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Callable

import yaml
from apache_beam.options.pipeline_options import (_CommaSeparatedListAction, _DictUnionAction,
                                                  _GcsCustomAuditEntriesAction)

from newsbeam.pipelines.options import InvalidOptions, did_you_mean

# Options (argparse dests) whose relative paths are resolved against the config file's folder.
# newsbeam's local paths, and Beam's files staged for Dataflow workers.
PATH_OPTIONS = frozenset({
    "input", "output", "feed", "feeds", "urls", "topic_model", "spacy_model", "sitemap",
    "archive_warc",
    "setup_file", "requirements_file", "requirements_cache", "extra_packages", "files_to_stage",
})
# Values of these are names unless they look like paths (a pipeline package, the shipped model).
_NAMED_VALUES = {"topic_model": ("shipped", "none")}
_NOT_IN_A_FILE = ("config",)  # no file names another

_REPEATABLE = (argparse._AppendAction, _CommaSeparatedListAction, _GcsCustomAuditEntriesAction)
_Scalar = (str, int, float)


# --- Pure functions ------------------------------------------------------------------------------


def given_on_command_line(make_parser: Callable[[], argparse.ArgumentParser],
                          words: list[str]) -> set[str]:
    """The options (dests) that `words` set: a parser with every default suppressed leaves only
    those in its namespace."""
    parser = make_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_known_args(words)[0]))


def resolve_path(value: str, folder: str) -> str:
    """A relative local path joined to `folder`; a URL (scheme://...) or absolute path as it
    is; '~' expanded."""
    if "://" in value:
        return value
    path = os.path.expanduser(value)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(folder, path))


def _is_path_value(dest: str, value: str) -> bool:
    if value in _NAMED_VALUES.get(dest, ()):
        return False
    if dest == "spacy_model":  # a package name unless it is written as a path
        return value.startswith((".", "~", "/")) or os.sep in value
    return True


def _checked_scalar(action: argparse.Action, value) -> str:
    """`value` as the word argparse would get; ValueError when argparse would refuse it."""
    if isinstance(value, bool):
        if action.choices and {"on", "off"} <= set(action.choices):
            return "on" if value else "off"  # YAML 1.1 reads a bare on/off as true/false
        raise ValueError("takes a value, not true/false")
    if not isinstance(value, _Scalar):
        raise ValueError(f"takes one value, not a {type(value).__name__}")
    text = str(value)
    if callable(action.type):
        try:
            action.type(text)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
            raise ValueError(f"{text!r} is not valid ({error})") from None
    if action.choices is not None and text not in action.choices:
        raise ValueError(f"{text!r} is not one of {', '.join(map(str, action.choices))}")
    return text


def _flag_words(key: str, action: argparse.Action, actions_of_dest: list[argparse.Action],
                value, folder: str) -> list[str]:
    """The command-line words for `key: value`; ValueError saying what is wrong with it."""
    if value is None:
        raise ValueError("has no value (leave the key out for the default)")
    if action.nargs == 0:  # a flag without a value: store_true, store_false
        if not isinstance(value, bool):
            raise ValueError(f"takes true or false, not {value!r}")
        if value:
            return [f"--{key}"]
        opposite = [a for a in actions_of_dest if a.nargs == 0 and a.const != action.const]
        return [opposite[0].option_strings[0]] if opposite else []
    if isinstance(action, _DictUnionAction) and isinstance(value, dict):
        return [f"--{key}={json.dumps(value)}"]
    values = value if isinstance(value, list) else [value]
    if len(values) != 1 and not isinstance(action, _REPEATABLE):
        raise ValueError("takes one value, not a list")
    words = []
    for item in values:
        text = _checked_scalar(action, item)
        if action.dest in PATH_OPTIONS and isinstance(item, str) and \
                _is_path_value(action.dest, text):
            text = resolve_path(text, folder)
        words.append(f"--{key}={text}")
    return words


def mapping_words(settings: dict, source: str, folder: str,
                  parser: argparse.ArgumentParser, given: set[str]) -> list[str]:
    """Command-line words for the options in `settings` that `given` does not hold; raises
    InvalidOptions naming `source` and each bad key."""
    actions = {flag[2:]: action for action in parser._actions for flag in action.option_strings
               if flag.startswith("--") and not isinstance(action, argparse._HelpAction)}
    keys = [name for name in actions if name not in _NOT_IN_A_FILE]
    words, problems = [], []
    for key, value in settings.items():
        key = str(key)
        if key not in keys:
            problems.append(f"{source}: {key}: no such option{did_you_mean(key, keys)}")
            continue
        action = actions[key]
        if action.dest in given:
            continue
        same_dest = [a for a in parser._actions if a.dest == action.dest]
        try:
            words += _flag_words(key, action, same_dest, value, folder)
        except ValueError as error:
            problems.append(f"{source}: {key}: {error}")
    if problems:
        raise InvalidOptions(problems)
    return words


# --- Reading a file ------------------------------------------------------------------------------


def read_config(path: str) -> dict:
    """The mapping in a YAML config file; InvalidOptions when it cannot be read or is not a
    mapping."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as stream:
            settings = yaml.safe_load(stream)
    except OSError as error:
        raise InvalidOptions([f"--config {path}: {error.strerror or error}"]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        detail = " ".join(str(error).split())
        raise InvalidOptions([f"--config {path}: not valid YAML: {detail}"]) from None
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise InvalidOptions([f"--config {path}: holds a {type(settings).__name__}; a config "
                              "file is a mapping of option names to values"])
    return settings


def config_words(path: str, make_parser: Callable[[], argparse.ArgumentParser],
                 command_line: list[str]) -> list[str]:
    """The words of config file `path` for the options `command_line` does not set, to go
    before the command line; raises InvalidOptions."""
    folder = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    return mapping_words(read_config(path), path, folder, make_parser(),
                         given_on_command_line(make_parser, command_line))


__all__ = ["PATH_OPTIONS", "config_words", "mapping_words", "read_config", "resolve_path"]
