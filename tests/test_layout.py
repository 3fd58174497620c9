"""The code's shape rules hold: no import cycles between our modules (imports inside functions count), no
module over ~600 lines, no function over ~80, no flat webui_*.py modules left."""

from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import layout


def test_no_import_cycles():
    assert layout.cycles(layout.modules()) == []


def test_cycle_detection_sees_imports_inside_functions(tmp_path):
    package = tmp_path / "utils"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from utils.b import x\n")
    (package / "b.py").write_text("def f():\n    from utils import a\n")
    (tmp_path / "webui.py").write_text("")
    assert layout.cycles(layout.modules(tmp_path)) == [["utils.a", "utils.b"]]


def test_modules_and_functions_stay_small():
    known = layout.modules()
    assert layout.long_modules(known) == []
    assert layout.long_functions(known) == []


def test_the_webui_is_a_package():
    assert not list((ROOT / "utils").glob("webui_*.py"))
