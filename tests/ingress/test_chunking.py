from deployments.config import ChunkingConfig
from deployments.ingress.chunking import chunk_document
from deployments.models import Document


def test_chunks_cover_text_with_overlap_and_stable_ids():
    text = " ".join(f"Sentence {i} carries word{i} here." for i in range(60))
    chunks = chunk_document(Document(id="doc", text=text), ChunkingConfig(max_words=40, overlap_words=8))
    assert [c.chunk_id for c in chunks] == [f"doc#{i}" for i in range(len(chunks))]
    assert all(len(c.text.split()) <= 40 for c in chunks)
    joined = " ".join(c.text for c in chunks)
    assert all(f"word{i}" in joined for i in range(60))
    # consecutive chunks share their boundary words
    assert chunks[0].text.split()[-8:] == chunks[1].text.split()[:8]


def test_long_sentence_is_cut_and_short_doc_is_one_chunk():
    chunks = chunk_document(Document(id="d", text="w " * 100), ChunkingConfig(max_words=30, overlap_words=0))
    assert [len(c.text.split()) for c in chunks] == [30, 30, 30, 10]
    assert len(chunk_document(Document(id="d", text="Short."), ChunkingConfig())) == 1


def test_metadata_is_copied_per_chunk():
    chunks = chunk_document(
        Document(id="d", text="a. " * 400, metadata={"lang": "en"}), ChunkingConfig(max_words=50, overlap_words=5)
    )
    assert len(chunks) > 1 and all(c.metadata == {"lang": "en"} for c in chunks)


def test_headings_and_paragraphs_stay_on_their_own_lines():
    text = "# Title here\nFirst paragraph. It has two sentences.\n\nSecond paragraph\nwraps a line."
    (chunk,) = chunk_document(Document(id="d", text=text), ChunkingConfig())
    assert chunk.text == "# Title here\nFirst paragraph. It has two sentences.\nSecond paragraph wraps a line."
