"""Build glue that pyproject.toml cannot express.

* The native renderer: ``cffi_modules`` compiles ``native/avz.c`` against
  ``native/avz.h`` into ``avatarizer._avz`` (cffi API mode); ``make native``
  does the same in place for development.
* The long description: README.md, with its pictures and links to files in
  the repository turned into plain text. The README keeps relative paths (they
  work in the repository, on any Git host and in an unpacked sdist); PyPI
  shows only the description text and cannot resolve relative paths, and
  there is no fixed public URL to point them at, so on PyPI they read as
  "picture: ... (docs/gallery.png in the source distribution)" instead of
  broken images.
"""
import re
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


class BuildExt(build_ext):
    """``build_ext`` that, building in place (``pip install -e .``), removes
    the package's other builds of the same extension: ``make native`` writes
    ``_avz.cpython-311-x86_64-linux-gnu.so``, setuptools ``_avz.abi3.so``,
    and Python imports the first, so the fresh build was never loaded."""

    def run(self):
        super().run()
        if not self.inplace:
            return
        for ext in self.extensions:
            built = Path(self.get_ext_fullpath(ext.name)).resolve()
            stem = ext.name.rsplit(".", 1)[-1]
            for other in built.parent.glob(f"{stem}.*.so"):
                if other.resolve() != built and other.name.split(".", 1)[0] == stem:
                    other.unlink()


def long_description(text: str) -> str:
    def picture(m: re.Match) -> str:
        alt, target = m.group(1), m.group(2)
        if re.match(r"[a-z]+://", target):
            return m.group(0)
        return f"*(picture: {alt}, `{target}` in the source distribution)*"

    def link(m: re.Match) -> str:
        label, target = m.group(1), m.group(2)
        if re.match(r"[a-z]+://|#|mailto:", target):
            return m.group(0)
        return f"{label} (`{target}`)"

    text = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", picture, text)
    return re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)", link, text)


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import long_description
    setup(
        cffi_modules=["bindings/build_avz.py:ffibuilder"],
        cmdclass={"build_ext": BuildExt},
        long_description=long_description((HERE / "README.md").read_text(encoding="utf-8")),
        long_description_content_type="text/markdown",
    )
