"""The wheel ships what the app reads outside ``portal/`` (issue #24).

pyproject.toml holds the metadata; this file only adds a build step. The repository keeps
its layout (``templates/``, ``translations/``, ``node_modules/`` at the top level), so
``build_py`` copies them into the built package, under ``portal/_shipped/``:

* ``templates/...``: the page templates;
* ``translations/<lang>/LC_MESSAGES/messages.mo``: each committed ``.po`` compiled with Babel;
* ``static/htmx.min.js`` and ``static/pico.min.css``: the front-end files installed by npm.

``portal.infra.config.data_path`` reads these copies when there is no checkout around the
package. An editable install (``make install``) reads the repository itself: nothing is copied.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
#: Shipped name -> the file installed by npm (``make install`` runs ``npm ci``).
FRONT_END = {
    "htmx.min.js": Path("node_modules/htmx.org/dist/htmx.min.js"),
    "pico.min.css": Path("node_modules/@picocss/pico/css/pico.min.css"),
}


class BuildWithShippedFiles(build_py):
    """``build_py``, then the templates, compiled translations and front-end files."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # the app reads the repository's own folders
            return
        self.ship(Path(self.build_lib) / "portal" / "_shipped")

    def ship(self, target: Path) -> None:
        missing = [str(path) for path in FRONT_END.values() if not (HERE / path).is_file()]
        if missing:
            raise SystemExit(
                f"pakiet: {', '.join(missing)} not found: run `make install` (it runs npm ci) "
                "before building the wheel"
            )
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(HERE / "templates", target / "templates")
        for name, path in FRONT_END.items():
            (target / "static").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HERE / path, target / "static" / name)
        self.compile_translations(HERE / "translations", target / "translations")

    @staticmethod
    def compile_translations(source: Path, target: Path) -> None:
        """Each ``<lang>/LC_MESSAGES/messages.po`` to its ``.mo``, as ``pybabel compile``
        does (fuzzy entries left out)."""
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po in sorted(source.glob("*/LC_MESSAGES/messages.po")):
            mo = target / po.relative_to(source).with_suffix(".mo")
            mo.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as infile:
                catalog = read_po(infile, locale=po.parts[-3])
            with mo.open("wb") as outfile:
                write_mo(outfile, catalog, use_fuzzy=False)


setup(cmdclass={"build_py": BuildWithShippedFiles})
