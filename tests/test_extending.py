"""docs/extending.md, executed: its example strategy and estimator are written from the page's
code blocks into a temporary folder, registered with the page's registry lines (and nothing
else), and run through `nas search`, `nas evaluate` and the strategy contract suite. A change
that breaks the page (or that makes a plugin need more than one file and one registry line)
fails here."""
from __future__ import annotations

import ast
import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest

import estimators
import nas.strategies
from estimators.registry import REGISTRY
from nas.cli import main
from nas.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
CONTRACT = ROOT / "tests" / "nas" / "test_strategy_contract.py"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def plugin_files() -> dict[str, str]:
    """The blocks that are files: their first line is `# path/to/module.py`."""
    files = {}
    for block in python_blocks():
        first = block.splitlines()[0]
        match = re.fullmatch(r"# (\S+\.py)", first.strip())
        if match:
            files[match.group(1)] = block
    return files


def registry_lines() -> dict[str, str]:
    """The blocks that are one registry line: `"name": "module:Class",`."""
    lines = {}
    for block in python_blocks():
        text = block.strip()
        if "\n" not in text and text.startswith('"'):
            entry = ast.literal_eval("{" + text + "}")  # a valid line of a dict literal
            lines.update(entry)
    return lines


def registry_for(target: str) -> dict[str, str]:
    """The registry a line belongs in, from the package of the module it names."""
    return STRATEGIES if target.startswith("nas.strategies.") else REGISTRY


def test_the_page_holds_two_files_and_two_registry_lines():
    files, lines = plugin_files(), registry_lines()
    assert sorted(files) == ["estimators/size.py", "nas/strategies/hillclimb.py"]
    assert lines == {"hillclimb": "nas.strategies.hillclimb:HillClimbing",
                     "size": "estimators.size:SizeEstimator"}
    for path in files:  # examples only: the page is their one home
        assert not (ROOT / path).exists(), f"{path} exists in the repository"
    for name in lines:
        assert name not in STRATEGIES and name not in REGISTRY


@pytest.fixture
def plugins(monkeypatch, tmp_path):
    """The page's files written under tmp_path, found where their registry lines say (the
    folders go in front of the packages' own), and the registry lines added."""
    folder = tmp_path / "plugins"
    for path, code in plugin_files().items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    monkeypatch.setattr(nas.strategies, "__path__",
                        [str(folder / "nas" / "strategies"), *nas.strategies.__path__])
    monkeypatch.setattr(estimators, "__path__", [str(folder / "estimators"), *estimators.__path__])
    lines = registry_lines()
    for name, target in lines.items():
        monkeypatch.setitem(registry_for(target), name, target)
    modules = [target.partition(":")[0] for target in lines.values()]
    yield folder
    for module in modules:
        sys.modules.pop(module, None)


def search(tmp_path: Path, *extra: str) -> int:
    return main(["search", "--space", "nb201", "--workers", "0", "--trials", "6",
                 "--no-anchors", "--quiet", "--out", str(tmp_path / "run"), *extra])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_the_plugins_load_from_the_page(plugins):
    from estimators.registry import get_estimator
    from nas.strategies import get_strategy, single_objective_strategies

    strategy, estimator = get_strategy("hillclimb"), get_estimator("size")
    for cls in (strategy, estimator):
        assert Path(sys.modules[cls.__module__].__file__).is_relative_to(plugins)
    assert strategy.name == "hillclimb" and "hillclimb" in single_objective_strategies()
    assert strategy.defaults == {"initial": 10, "explore": 0.1}
    assert estimator.name == "size" and not estimator.needs_data and estimator.unit == "score"
    assert estimator.option_defaults() == {"count": "params"}


def test_help_lists_the_new_choices(plugins, capsys):
    for command in ("search", "evaluate"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        assert "size" in text.split("--estimator", 1)[1].split("\n  --", 1)[0]
        if command == "search":
            assert "hillclimb" in text.split("--strategy", 1)[1].split("\n  --", 1)[0]


def test_search_with_the_example_strategy_and_estimator(plugins, tmp_path, capsys):
    assert search(tmp_path, "--strategy", "hillclimb", "--estimator", "size",
                  "--option", "initial=3", "--option", "count=flops") == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    text = json.dumps(config)
    assert "hillclimb" in text and '"size"' in text and '"initial": 3' in text
    assert '"count": "flops"' in text
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # single objective (multi_objective = False): the default objective is acc alone
    assert summary["objectives"] == [["acc", "maximize"]]


def test_search_with_the_example_estimator_and_a_built_in_strategy(plugins, tmp_path):
    """nsga2 (the default strategy) with the size score: default objectives acc and flops."""
    assert search(tmp_path, "--estimator", "size") == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["objectives"] == [["acc", "maximize"], ["flops", "minimize"]]
    assert summary["trials"] == 6


def test_evaluate_with_the_example_estimator(plugins, capsys):
    from estimators.flops import FlopsEstimator
    from search_spaces import get_space

    assert main(["evaluate", "--space", "nb201", "--ref", "all_c3", "--estimator", "size",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    arch = get_space("nb201").reference_archs()["all_c3"]
    assert payload["acc_estimator"] == "size:params"
    assert payload["acc"] == pytest.approx(math.log10(FlopsEstimator()(arch)["params"]))


@pytest.mark.parametrize("argv, named", [
    (("--strategy", "hillclimb", "--estimator", "size", "--option", "initial=bad"), "initial"),
    (("--strategy", "hillclimb", "--estimator", "size", "--option", "explore=2"), "explore"),
    (("--strategy", "hillclimb", "--estimator", "size", "--option", "count=bad"), "count"),
])
def test_bad_options_are_one_error_line(plugins, tmp_path, capsys, argv, named):
    assert search(tmp_path, *argv) == 2
    assert named in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def contract_module():
    """tests/nas/test_strategy_contract.py (the module pytest imported, if it did)."""
    name = CONTRACT.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CONTRACT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_strategy_keeps_the_strategy_contract(plugins):
    contract = contract_module()
    checks = [value for key, value in vars(contract).items()
              if key.startswith("test_") and callable(value)
              and [m.args[0] for m in getattr(value, "pytestmark", [])
                   if m.name == "parametrize"] == ["name"]]
    assert len(checks) >= 10  # every check that takes a strategy name
    for check in checks:
        if "single_objective" in check.__name__ and get_multi("hillclimb"):
            continue
        check("hillclimb")


def get_multi(name: str) -> bool:
    from nas.strategies import is_multi_objective

    return is_multi_objective(name)
