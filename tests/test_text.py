"""The shared text helpers (deployments/text.py): one notion of a term, a sentence and a name for every stage."""

from deployments.text import NAME_TOKEN, STOP_WORDS, normalize_name, split_sentences, terms


def test_terms_drop_stop_words_and_fold_plurals():
    assert terms("What are the companies Curie's labs founded?") == ["company", "curie", "lab", "founded"]
    assert terms("Tell me how many of them there are") == []  # only stop words


def test_sentences_split_after_punctuation_and_on_lines():
    assert split_sentences("One. Two! Three?\nFour\n\n  Five") == ["One.", "Two!", "Three?", "Four", "  Five"]
    assert split_sentences("U.S.A. is short.") == ["U.S.A.", "is short."]  # no abbreviation handling, by design


def test_name_tokens_keep_inner_punctuation_and_keys_drop_it():
    assert NAME_TOKEN.findall("O'Brien met Jean-Luc in the U.S.A.") == [
        "O'Brien",
        "met",
        "Jean-Luc",
        "in",
        "the",
        "U.S.A",
    ]
    assert normalize_name("O'Brien") == "obrien" and normalize_name("Jean-Luc") == "jean luc"


def test_one_stop_word_list():
    assert {"the", "of", "tell", "please"} <= STOP_WORDS and "curie" not in STOP_WORDS
