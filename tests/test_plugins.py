"""Plugins: entry points load lazily and once; failures warn, collisions fail; RotNet runs.

Fake distributions (a ``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt`` beside
their modules) are put on ``sys.path`` so ``importlib.metadata`` finds them without installing
anything; the method and task registries are copied for each test and restored after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import torch

from fetalbench.data.tasks import TASKS
from fetalbench.errors import FetalbenchError
from fetalbench.methods import BUILT_IN_METHODS, METHODS
from fetalbench.runs.execute import execute_run
from fetalbench.runs.spec import RunRequest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fetalbench-plugin-example"
PLUGIN_MODULES = ("fake_plugin", "fetalbench_plugin_example")


def fake_distribution(
    root: Path, name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]
) -> Path:
    """Write an installed-looking distribution ``name`` and its modules under ``root``."""
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = []
    for group, points in entry_points.items():
        lines += [f"[{group}]", *(f"{key} = {value}" for key, value in points.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture
def fresh_registries(monkeypatch: pytest.MonkeyPatch):
    """Copies of the method and task registries whose plugins are not loaded yet.

    A built-in method module first imported during the test registered into the copy only, so
    it is forgotten afterwards and registers into the real registry when next looked up.
    """
    imported = set(sys.modules)
    for registry in (METHODS, TASKS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_sources", dict(registry._sources))
        monkeypatch.setattr(registry, "_plugins_loaded", False)
    yield
    built_ins = {f"fetalbench.methods.{module}" for _, module, _ in BUILT_IN_METHODS}
    for module in [m for m in sys.modules if m.startswith(PLUGIN_MODULES)
                   or (m in built_ins and m not in imported)]:
        del sys.modules[module]


METHOD_PLUGIN = """
    from fetalbench.api import Classifier, MethodResult, create_backbone, register_method

    @register_method("fake_method", "a plugin method")
    def fake_method(context):
        return MethodResult(Classifier(create_backbone("resnet18", "random"), 2))
"""

TASK_PLUGIN = """
    from fetalbench.api import Task, register_task

    def register():
        register_task(Task("fake_task", "plane", ("Fetal brain", "Other"), "a plugin task"))
"""


def test_plugin_methods_and_tasks_load_lazily_once(
    fresh_registries: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered = list(dict.fromkeys([*METHODS._declared, *METHODS._entries]))  # no plugins yet
    fake_distribution(
        tmp_path, "fetalbench-plugin-fake",
        {"fetalbench.methods": {"fake": "fake_plugin_methods"},
         "fetalbench.tasks": {"fake_task": "fake_plugin_tasks:register"}},
        {"fake_plugin_methods": METHOD_PLUGIN, "fake_plugin_tasks": TASK_PLUGIN},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "fake_plugin_methods" not in sys.modules
    names = METHODS.names()
    assert names[: len(registered)] == registered
    assert "fake_method" in names and "fake_method" in METHODS
    assert METHODS.source("fake_method") == (
        "plugin fetalbench-plugin-fake (fetalbench.methods: fake = fake_plugin_methods)"
    )
    assert METHODS.names() == names  # loaded once: a second load would be a collision
    assert "fake_task" in list(TASKS)
    assert TASKS.source("fake_task") == (
        "plugin fetalbench-plugin-fake (fetalbench.tasks: fake_task = fake_plugin_tasks:register)"
    )


BROKEN_WARNING = (
    "fetalbench: warning: skipped plugin fetalbench-plugin-broken (fetalbench.methods: broken = "
    "fake_plugin_broken): RuntimeError: boom on two lines (fix the plugin or `pip uninstall "
    "fetalbench-plugin-broken`)"
)


def broken_distribution(root: Path) -> Path:
    """A plugin whose import raises an error with a two-line message."""
    return fake_distribution(
        root, "fetalbench-plugin-broken", {"fetalbench.methods": {"broken": "fake_plugin_broken"}},
        {"fake_plugin_broken": "raise RuntimeError('boom\\non two lines')\n"},
    )


def test_broken_plugin_warns_one_line_and_every_built_in_stays(
    fresh_registries: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registered = list(METHODS._entries)
    broken_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert METHODS.get("supervised_scratch").name == "supervised_scratch"
    assert set(registered) <= set(METHODS.names())
    warnings = [r.getMessage() for r in caplog.records if r.name == "fetalbench.plugins"]
    assert warnings == [BROKEN_WARNING]


def test_broken_plugin_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    broken_distribution(tmp_path)
    listed = subprocess.run(
        [sys.executable, "-m", "fetalbench", "methods"], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120,
    )
    assert listed.returncode == 0
    assert listed.stderr.splitlines() == [BROKEN_WARNING]
    assert "supervised_scratch " in listed.stdout and "simclr " in listed.stdout


def test_plugin_taking_a_built_in_name_is_an_error_naming_both(
    fresh_registries: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(
        tmp_path, "fetalbench-plugin-clash", {"fetalbench.methods": {"clash": "fake_plugin_clash"}},
        {"fake_plugin_clash": METHOD_PLUGIN.replace('"fake_method"', '"simclr"')},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(FetalbenchError) as raised:
        METHODS.get("supervised_scratch")
    assert str(raised.value) == (
        "method 'simclr' is registered twice: by fetalbench.methods.simclr and by plugin "
        "fetalbench-plugin-clash (fetalbench.methods: clash = fake_plugin_clash); rename one of "
        "them"
    )


def test_rotation_labels_match_the_rotation(
    fresh_registries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from fetalbench_plugin_example.rotnet import rotate_all, rotate_balanced

    images = torch.rand(8, 1, 5, 5)
    for rotate in (rotate_all, rotate_balanced):
        rotated, labels = rotate(images)
        assert torch.bincount(labels).tolist() == [len(labels) // 4] * 4
        for index, (view, k) in enumerate(zip(rotated, labels.tolist(), strict=True)):
            original = images[index % len(images)]
            assert torch.equal(torch.rot90(view, -k, dims=(1, 2)), original)


def test_example_rotnet_trains_through_its_entry_point(
    fresh_registries: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    real_subset_root: Path,
) -> None:
    declared = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    fake_distribution(tmp_path / "site", declared["name"], declared["entry-points"], {})
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert {"rotnet", "rotnet_imagenet"} <= set(METHODS.names())
    request = RunRequest(method="rotnet", task="planes", dataset="fetal_planes_db",
                         data_root=real_subset_root, fraction=0.5, profile="tiny")
    outcome = execute_run(request, tmp_path / "out", tmp_path / "cache", log=lambda _: None)
    record = json.loads(outcome.record_path.read_text())
    assert record["status"] == "ok"
    assert record["method_notes"]["objective"] == "rotnet"
    assert record["method_notes"]["objective_paper"] == "Gidaris, Singh and Komodakis, ICLR 2018"
    assert record["method_notes"]["pretraining"]["steps"] == 2
