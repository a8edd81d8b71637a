from miniml.models.vocab import PAD, UNK, VocabFeaturizer, load_vocab


def test_fit_encode_collate_roundtrip(tmp_path) -> None:
    texts = ["abbb", "abc", "B"]
    feat = VocabFeaturizer.fit(texts, unit="char", max_size=10, min_count=2, max_length=3, lowercase=True)
    assert feat.vocab == ["b", "a"]  # by count, then alphabetically; "c" seen once is dropped
    ids = feat.encode(["abcz"])[0]["input_ids"].tolist()
    assert ids == [3, 2, UNK]  # truncated to max_length=3
    batch = feat.collate(feat.encode(["ab", "", "b"]))
    assert batch["input_ids"].tolist() == [[3, 2], [PAD, PAD], [2, PAD]]
    assert batch["lengths"].tolist() == [2, 1, 1]
    assert feat.collate(feat.encode(["ab"]), pad_to_max=True)["input_ids"].shape == (1, 3)
    feat.save(tmp_path)
    again = load_vocab(tmp_path, {})
    assert again.batch(["abc"])["input_ids"].tolist() == feat.batch(["abc"])["input_ids"].tolist()


def test_word_units() -> None:
    feat = VocabFeaturizer.fit(
        ["Hej, hej du!"], unit="word", max_size=10, min_count=1, max_length=8, lowercase=True
    )
    assert set(feat.vocab) == {"hej", ",", "du", "!"}
