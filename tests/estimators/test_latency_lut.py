"""Published per-operator lookup tables imported as devices (TF-NAS JSON, ProxylessNAS YAML)."""
from __future__ import annotations

import itertools
import json

import pytest
import yaml
from latency_toy import toy_space

from estimators.latency import import_lut, open_predictor
from estimators.latency.errors import LatencyError
from estimators.latency.lut import detect_format
from nas.cli import main
from search_spaces import get_space, load_space_file, register_space


@pytest.fixture(scope="module")
def toy():
    return toy_space()


def _tfnas_table(tmp_path):
    """Entries for every toy MBConv: value = r/100 + k/10 + mid/1000 (stage 2 doubled)."""
    table: dict[str, object] = {"base": 1.5}
    for r, k, e in itertools.product((8, 12), (3, 5), (2, 4)):
        table[f"MBInvertedResBlock_{r}_8_0_8_k{k}_s1_relu"] = {
            str(m): r / 100 + k / 10 + m / 1000 for m in (4, 8, 16, 32)}
        table[f"MBInvertedResBlock_{r}_8_0_16_k{k}_s2_swish"] = {
            str(m): 2 * (r / 100 + k / 10 + m / 1000) for m in (16, 32)}
    table["MBInvertedResBlock_8_8_0_8_k3_s1_relu"]["4"] = -0.2  # interpolated junk, clamped
    path = tmp_path / "tfnas.json"
    path.write_text(json.dumps(table))
    return path


def test_tfnas_table_predicts_base_plus_mbconv_entries(toy, tmp_path):
    path = _tfnas_table(tmp_path)
    assert detect_format(path) == "tfnas"
    info = import_lut(str(path), "tfnas-toy", cache_dir=tmp_path)
    assert info["notes"]["clamped_negative_entries"] == 1 and info["overhead_ms"] == 1.5
    predictor = open_predictor(toy, "tfnas-toy", cache_dir=tmp_path)
    for arch in (toy.min_arch(), toy.max_arch(), toy.parse("r12-k5e2-k3e4")):
        r, k1, e1, k2, e2 = (arch[g] for g in ("r", "k1", "e1", "k2", "e2"))
        first = r / 100 + k1 / 10 + 8 * e1 / 1000
        second = 2 * (r / 100 + k2 / 10 + 8 * e2 / 1000)
        expected = 1.5 + first + second
        assert predictor.latency_ms(arch) == pytest.approx(expected)


def test_proxyless_table_charges_stem_blocks_and_logits(toy, tmp_path):
    table = {}
    for r in (8, 12):
        half = r // 2
        table[f"Conv-input:{r}x{r}x3-output:{r}x{r}x8"] = {"count": 3, "mean": 1.0, "var": 0}
        for k, e in itertools.product((3, 5), (2, 4)):
            table[f"expanded_conv-input:{r}x{r}x8-output:{r}x{r}x8-expand:{e}-kernel:{k}-"
                  f"stride:1-idskip:1"] = {"count": 3, "mean": 0.1 * k * e, "var": 0}
            table[f"expanded_conv-input:{r}x{r}x8-output:{half}x{half}x16-expand:{e}-kernel:{k}-"
                  f"stride:2-idskip:0"] = {"count": 3, "mean": 0.2 * k * e, "var": 0}
        table[f"Logits-input:{half}x{half}x16-output:5"] = {"count": 3, "mean": 0.5, "var": 0}
    path = tmp_path / "phone.yaml"
    path.write_text(yaml.safe_dump(table))
    assert detect_format(path) == "proxyless"
    import_lut(str(path), "phone", cache_dir=tmp_path)
    predictor = open_predictor(toy, "phone", cache_dir=tmp_path)
    arch = toy.parse("r12-k5e2-k3e4")
    assert predictor.latency_ms(arch) == pytest.approx(1.0 + 0.1 * 5 * 2 + 0.2 * 3 * 4 + 0.5)


def test_uncovered_blocks_and_bad_files_are_user_errors(toy, tmp_path, capsys):
    import_lut(str(_tfnas_table(tmp_path)), "tfnas-toy", cache_dir=tmp_path)
    mobile = get_space("mobile")
    with pytest.raises(LatencyError, match="has no entry 'MBInvertedResBlock_"):
        open_predictor(mobile, "tfnas-toy", cache_dir=tmp_path).latency_ms(mobile.min_arch())
    junk = tmp_path / "junk.json"
    junk.write_text('{"a": 1}')
    code = main(["latency", "import", str(junk), "--name", "x", "--cache-dir", str(tmp_path)])
    assert code == 2 and "not a known lookup-table format" in capsys.readouterr().err
    code = main(["latency", "import", str(junk), "--name", "cpu", "--format", "tfnas",
                 "--cache-dir", str(tmp_path)])
    assert code == 2 and "not usable" in capsys.readouterr().err


def test_published_tables_import_and_price_their_spaces(shared_data, tmp_path, capsys):
    lut = shared_data / "lut"
    cache = str(tmp_path)
    assert main(["latency", "import", str(lut / "proxylessnas_pixel1.yaml"), "--name", "pixel1",
                 "--cache-dir", cache, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 72
    raw = json.loads((lut / "tfnas_latency_cpu.json").read_text())
    negative = sum(v < 0 for k, block in raw.items() if k != "base" for v in block.values())
    info = import_lut(str(lut / "tfnas_latency_cpu.json"), "xeon6130", cache_dir=cache)
    assert info["notes"]["clamped_negative_entries"] == negative
    assert info["overhead_ms"] == raw["base"]
    # ProxylessNAS's space: MobileNetV2's skeleton with its own widths, at 224
    spec = {"name": "proxyless-lut", "base": "mobilenetv2", "widths": [24, 40, 80, 96, 192, 320],
            "expands": [3, 6], "resolutions": [224], "width_mults": [1.0]}
    (tmp_path / "proxyless.json").write_text(json.dumps(spec))
    space = register_space(load_space_file(tmp_path / "proxyless.json"))
    arch = space.uniform(3, 6, (2, 3, 4, 3, 3, 1), 224)
    pixel1 = open_predictor(space, "pixel1", cache_dir=cache)
    blocks = dict(pixel1.block_ms(arch)[i] for i in (0, -2))
    stem, logits = (s for s in blocks)
    assert blocks[stem] == pytest.approx(4.397037934668071)  # the YAML's `Conv` mean
    assert blocks[logits] == pytest.approx(0.9348261327713382)  # its `Logits` mean
    # MobileNetV2-shaped, wider: the paper reports 75 ms for MobileNetV2 on a Pixel 1
    assert 60 < pixel1.latency_ms(arch) < 150


def test_import_under_an_existing_name_is_refused_unless_replace(toy, tmp_path, capsys):
    """Importing twice under one name used to merge the two tables' entries."""
    cache = str(tmp_path / "cache")
    first = _tfnas_table(tmp_path)
    assert main(["latency", "import", str(first), "--name", "dev", "--cache-dir", cache,
                 "--quiet"]) == 0
    capsys.readouterr()
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"base": 0.5, "MBInvertedResBlock_8_8_0_8_k3_s1_relu":
                                 {"16": 0.25}}))
    code = main(["latency", "import", str(other), "--name", "dev", "--cache-dir", cache])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "already exists" in err and "--replace" in err
    assert main(["latency", "import", str(other), "--name", "dev", "--cache-dir", cache,
                 "--replace", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 1
    from estimators.latency.store import LatencyStore

    assert LatencyStore(cache_dir=cache).count("lut:dev") == 1  # nothing of the first table


@pytest.mark.parametrize("content, suffix", [
    ('{"base": 1.0, "MBInvertedResBlock_8_8_0_8_k3_s1_relu": {"4": NaN}}', "json"),
    ('{"base": 1.0, "MBInvertedResBlock_8_8_0_8_k3_s1_relu": {"4": "fast"}}', "json"),
    ('{"base": -3.0, "MBInvertedResBlock_8_8_0_8_k3_s1_relu": {"4": 0.1}}', "json"),
    ("Conv-input:8x8x3-output:8x8x8: {count: 1, mean: -1.0, var: 0}\n", "yaml"),
    ("Conv-input:8x8x3-output:8x8x8: {count: 1, mean: .nan, var: 0}\n", "yaml"),
    ("Conv-input:8x8x3-output:8x8x8: {count: 1, mean: null, var: 0}\n", "yaml"),
])
def test_tables_with_bad_latencies_are_refused(tmp_path, content, suffix):
    path = tmp_path / f"table.{suffix}"
    path.write_text(content)
    with pytest.raises(LatencyError) as info:
        import_lut(str(path), "bad", cache_dir=tmp_path)
    assert "\n" not in str(info.value) and "not a valid" in str(info.value)


@pytest.mark.parametrize("payload", ['[1, 2]', '{"kind": "lut"}',
                                     '{"kind": "lut", "fingerprint": "lut:d", "batch_size": 1, '
                                     '"dtype": "float32", "format": "tfnas", "overhead_ms": -2}',
                                     '{"kind": "fit", "models": {"lattoy": {"model": {}}}}'])
def test_damaged_device_files_are_one_line_errors(toy, tmp_path, payload):
    from estimators.latency.cache import devices_dir

    (devices_dir(tmp_path) / "d.json").write_text(payload)
    with pytest.raises(LatencyError) as info:
        open_predictor(toy, "d", cache_dir=tmp_path)
    assert "\n" not in str(info.value) and "damaged" in str(info.value)
