"""Figures as PNG files: rendered by kaleido in one headless Chrome or Chromium for all of them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import plotly.graph_objects as go

from studies.errors import UserInputError

DEFAULT_CHROMIUM = "/usr/bin/chromium"  # Debian's `chromium` package; $TUNE_CHROMIUM names another browser
CHROMIUM_VARIABLE = "TUNE_CHROMIUM"
PNG_SIZE = {"width": 1100, "height": 550}


class PngError(UserInputError):
    """PNGs that cannot be rendered here; the message says what to install."""


def _chromium_path() -> str | None:
    """$TUNE_CHROMIUM, else Debian's chromium if installed; None lets kaleido search ($BROWSER_PATH, PATH, its own download)."""
    chosen = os.environ.get(CHROMIUM_VARIABLE)
    if chosen or os.environ.get("BROWSER_PATH"):
        return chosen
    return DEFAULT_CHROMIUM if os.access(DEFAULT_CHROMIUM, os.X_OK) else None


def browser_path() -> str | None:
    """The Chrome or Chromium PNGs would be rendered in, found as kaleido finds it; None where there is none."""
    chosen = _chromium_path()
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    try:
        from choreographer.browsers.chromium import Chromium  # kaleido's own search: $BROWSER_PATH, PATH, its download

        return Chromium.find_browser(skip_local=False)
    except Exception:  # another choreographer than kaleido 1.x brings: search PATH as it would
        return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome"))), None)


def write_figure_pngs(figures: dict[Path, go.Figure]) -> list[Path]:
    """Each figure as a PNG at its path, all rendered in one headless browser."""
    try:
        import kaleido
        from kaleido.errors import ChromeNotFoundError, JavascriptError
    except ImportError as exc:
        raise PngError("--png needs kaleido: pip install 'kaleido>=1.5.1'") from exc
    paths = list(figures)
    options = {"mathjax": False}  # the figures use no LaTeX, and mathjax would be fetched from a CDN
    browser = _chromium_path()
    if browser:
        options["path"] = browser
    specs = [{"fig": figure, "path": path, "opts": {"format": "png", **PNG_SIZE}} for path, figure in figures.items()]
    try:
        try:
            kaleido.write_fig_from_object_sync(specs, kopts=options, cancel_on_error=True)
        except JavascriptError:  # on a busy machine a tab can be asked to render before its page has loaded: once more
            kaleido.write_fig_from_object_sync(specs, kopts=options, cancel_on_error=True)
    except ChromeNotFoundError as exc:
        where = f"${CHROMIUM_VARIABLE}={browser}" if os.environ.get(CHROMIUM_VARIABLE) else f"{DEFAULT_CHROMIUM} or on PATH"
        raise PngError(
            f"--png needs Chrome or Chromium and none was found at {where}: install one "
            f"(apt-get install chromium, or `kaleido_get_chrome`) or set {CHROMIUM_VARIABLE} to its executable"
        ) from exc
    return paths
