"""The model catalogue: every row of the seed's table and of lmforge's generations, sourced; the
facts the issue names; local models attached by family; a corrupt file named; the CLI."""

from __future__ import annotations

import json

import pytest

from lmforge.cli import main
from lmforge.errors import DataError
from lmforge.models import FAMILIES
from lmforge.serve import catalogue
from lmforge.serve.catalogue import catalogue_rows, format_catalogue, load_catalogue

INDUSTRIAL = (
    "M6",
    "Stable Diffusion 1.0",
    "Stable Diffusion 2.0",
    "Whisper",
    "ERNIE-ViLG 2.0",
    "Whisper V2 (large-v2)",
    "MOSS",
    "PaLM-E",
    "Visual ChatGPT",
    "GPT-4",
    "HuggingGPT",
    "LVDM",
    "Whisper JAX",
)
GENERATIONS = {  # name -> lmforge family
    "n-gram (modified Kneser-Ney)": "ngram",
    "NNLM": "nnlm",
    "RNNLM": "rnn",
    "LSTM LM": "lstm",
    "Transformer": "seq2seq",
    "ELMo": "elmo",
    "GPT-1": "gpt",
    "GPT-2": "gpt",
    "GPT-3": "gpt",
    "BERT": "bert",
}


def by_name() -> dict[str, dict]:
    return {row["name"]: row for row in load_catalogue()}


def test_every_seed_row_and_generation_is_present_once():
    rows = load_catalogue()
    names = [row["name"] for row in rows]
    assert sorted(names) == sorted(INDUSTRIAL + tuple(GENERATIONS))
    assert [r["name"] for r in rows if r["group"] == "industrial"] == list(INDUSTRIAL)
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids)


def test_every_row_has_an_http_source_and_a_parameter_text():
    for row in load_catalogue():
        assert row["source"].startswith(("http://", "https://")), row["id"]
        assert row["parameters_text"].strip(), row["id"]
        count = row["parameters"]
        assert count is None or (isinstance(count, int) and count > 0), row["id"]


def test_gpt4_size_is_unpublished():
    gpt4 = by_name()["GPT-4"]
    assert gpt4["parameters"] is None
    assert "not published" in gpt4["parameters_text"]
    assert "unpublished" in gpt4["note"].lower()


@pytest.mark.parametrize("name", ["Visual ChatGPT", "HuggingGPT"])
def test_systems_have_no_weights_of_their_own(name):
    row = by_name()[name]
    assert row["kind"] == "system"
    assert row["parameters"] is None


def test_whisper_jax_is_a_port_of_large_v2():
    rows = by_name()
    jax, v2 = rows["Whisper JAX"], rows["Whisper V2 (large-v2)"]
    assert jax["kind"] == "port"
    assert jax["parameters"] == v2["parameters"] == 1_550_000_000


def test_stable_diffusion_rows_keep_the_seed_figure_in_units_of_1e8():
    rows = by_name()
    sd1, sd2 = rows["Stable Diffusion 1.0"], rows["Stable Diffusion 2.0"]
    assert sd1["seed_parameters"] == sd2["seed_parameters"] == "9.83"
    assert sd1["parameters"] == pytest.approx(float(sd1["seed_parameters"]) * 1e8, rel=0.05)
    # 2.0's larger OpenCLIP text encoder makes it about 1.2 B: the seed repeated 1.x's figure
    assert sd2["parameters"] == pytest.approx(1.22e9, rel=0.05)
    assert "repeats Stable Diffusion 1" in sd2["note"]


def test_lvdm_keeps_the_seed_zero_and_publishes_no_invented_count():
    lvdm = by_name()["LVDM"]
    assert lvdm["seed_parameters"] == "0"
    assert lvdm["parameters"] is None
    assert lvdm["note"]


def test_only_the_seed_rows_carry_a_seed_figure():
    carried = {r["name"] for r in load_catalogue() if r["seed_parameters"] is not None}
    assert carried == {"Stable Diffusion 1.0", "Stable Diffusion 2.0", "LVDM"}


def test_every_generation_names_a_registered_family_and_its_commands():
    rows = by_name()
    for name, family in GENERATIONS.items():
        row = rows[name]
        assert row["group"] == "lmforge"
        assert row["lmforge_family"] == family
        assert row["lmforge_family"] in FAMILIES
        assert set(row["how"]) == {"train", "evaluate", "serve"}
        assert all(command.startswith("lmforge ") for command in row["how"].values())
        folder = row["how"]["serve"].split()[-1]
        assert row["how"]["serve"] == f"lmforge serve {folder}"
        assert folder in row["how"]["train"] and folder in row["how"]["evaluate"]


def test_the_commands_name_real_flags_of_each_family():
    rows = by_name()
    assert rows["n-gram (modified Kneser-Ney)"]["how"]["train"].startswith("lmforge ngram train")
    assert rows["BERT"]["how"]["train"].startswith("lmforge pretrain --model bert")
    assert "--pairs" in rows["Transformer"]["how"]["train"]
    assert "--model gpt" in rows["GPT-3"]["how"]["train"]


def test_local_models_attach_to_their_family_rows_only():
    rows = catalogue_rows({"gpt": [{"id": "x"}]})
    for row in rows:
        if row["group"] == "industrial":
            assert "local" not in row
        elif row["lmforge_family"] == "gpt":
            assert row["local"] == [{"id": "x"}]
        else:
            assert row["local"] == []
    assert sum(1 for row in rows if row.get("local")) == 3  # GPT-1, GPT-2, GPT-3


def test_default_rows_have_empty_local_lists():
    rows = [row for row in catalogue_rows() if row["group"] == "lmforge"]
    assert len(rows) == len(GENERATIONS)
    assert all(row["local"] == [] for row in rows)


def test_rows_are_copies_a_caller_may_change():
    load_catalogue()[0]["name"] = "changed"
    catalogue_rows({"gpt": [{"id": "x"}]})
    assert load_catalogue()[0]["name"] == "M6"
    assert all("local" not in row for row in load_catalogue())


def write_rows(tmp_path, rows):
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps({"rows": rows}), encoding="utf-8")
    return path


def test_a_row_without_source_is_named(tmp_path, monkeypatch):
    rows = load_catalogue()
    del rows[4]["source"]  # ERNIE-ViLG 2.0
    monkeypatch.setattr(catalogue, "CATALOGUE_PATH", write_rows(tmp_path, rows))
    with pytest.raises(DataError, match=r"row 5 \(ernie-vilg-2\): missing source"):
        load_catalogue()


def test_a_non_http_source_and_a_duplicate_id_are_named(tmp_path, monkeypatch):
    rows = load_catalogue()
    rows[1]["source"] = "arXiv 2112.10752"
    monkeypatch.setattr(catalogue, "CATALOGUE_PATH", write_rows(tmp_path, rows))
    with pytest.raises(DataError, match=r"row 2 \(stable-diffusion-1\): source must be"):
        load_catalogue()

    monkeypatch.undo()
    rows = load_catalogue()
    rows[2]["id"] = rows[0]["id"]
    (tmp_path / "dup").mkdir()
    monkeypatch.setattr(catalogue, "CATALOGUE_PATH", write_rows(tmp_path / "dup", rows))
    with pytest.raises(DataError, match=r"row 3 \(m6\): its id is already used"):
        load_catalogue()


def test_a_file_that_is_not_json_is_named(tmp_path, monkeypatch):
    path = tmp_path / "catalogue.json"
    path.write_text('{"rows": [', encoding="utf-8")
    monkeypatch.setattr(catalogue, "CATALOGUE_PATH", path)
    with pytest.raises(DataError, match="not UTF-8 JSON"):
        load_catalogue()


def test_the_table_aligns_wide_characters():
    rows = [
        dict(name="模型", released="2023", parameters_text="1 B", modality="m", organisation="o"),
        dict(name="ab", released="2024", parameters_text="2 B", modality="m", organisation="o"),
    ]
    lines = format_catalogue(rows).splitlines()
    wide, narrow = lines[2], lines[3]
    # the same terminal column, although "模型" is two characters wide each
    assert catalogue._width(wide[: wide.index("2023")]) == len(narrow[: narrow.index("2024")]) == 6
    assert lines[-1].startswith("2 models")


def test_cli_json_lists_every_row(capsys):
    assert main(["catalogue", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in out["rows"]] == [row["name"] for row in load_catalogue()]
    gpt4 = next(row for row in out["rows"] if row["id"] == "gpt-4")
    assert gpt4["parameters"] is None
    assert all(row["local"] == [] for row in out["rows"] if row["group"] == "lmforge")


def test_cli_table_names_the_models(capsys):
    assert main(["catalogue"]) == 0
    out = capsys.readouterr().out
    assert "GPT-4" in out and "Whisper JAX" in out and "not published" in out
    assert out.splitlines()[0].split()[:2] == ["name", "released"]
