"""The README's picture of the report: a full-page screenshot of a report page in the system's
headless Chromium, driven by Playwright (no browser download), 1280 pixels wide.
`make docs-report` runs it over the report of the html-dev pages; see the Makefile."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("page", type=Path, help="the report's HTML file")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args(argv)
    browser_path = next(filter(None, map(shutil.which, BROWSERS)), None)
    if browser_path is None:
        print(f"no browser on PATH ({', '.join(BROWSERS)}): apt-get install chromium",
              file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_context(offline=True, viewport={
                "width": args.width, "height": 900}).new_page()
            page.goto(args.page.resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                "document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
            page.screenshot(path=str(args.png), full_page=True)
        finally:
            browser.close()
    print(f"{args.png}: {args.png.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
