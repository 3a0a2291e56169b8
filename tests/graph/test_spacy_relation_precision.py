"""Relation precision of the spaCy extractor (issue 23, VERSION 6): a relation whose end is cut from a longer name,
or whose words the parser only guessed at, is left out; the same facts written plainly are kept. The sentences are
the wrong relations of the labelled samples (benchmarks/results/kg-labels/), written again."""

import pytest

from deployments.graph.extraction.spacy import SpacyExtractor
from deployments.models import Chunk, Extraction


@pytest.fixture(scope="module")
def extractor() -> SpacyExtractor:
    return SpacyExtractor()


def facts(extractor: SpacyExtractor, text: str) -> set[tuple[str, str, str]]:
    ex: Extraction = extractor(Chunk(chunk_id="d#0", doc_id="d", index=0, text=text))
    return {(r.source, r.type, r.target) for r in ex.relations}


# (text, a name no relation may start or end at, or a relation that must not be stated)
LEFT_OUT = {
    "a piece of the heading written again": (
        "Pookey Bleum\n\nPookey Bleum was a power pop band formed in 1996 in Ames, Iowa.",
        "bleum",
    ),
    "the heading as a second subject": (
        "Islam in West Bengal\n\nSince the partition of India in 1947, the majority of the Bengali Muslims have "
        "lived in Bangladesh.",
        "islam in west bengal",
    ),
    "a name word before the name": (
        "In 2004 the American Russell Terrier Club submitted a request to the AKC.",
        "russell terrier club",
    ),
    "a name glued to a dash": (
        "Piedboeuf Brewery\n\nPiedboeuf Brewery (Brasserie Piedboeuf) is a brewery in Jupille-sur-Meuse, Belgium. "
        "It is owned by Anheuser–Busch InBev. The main brand is Jupiler, the best selling beer in Belgium.",
        "anheuser",
    ),
    "a name torn by escaped markup": ("Harris, Forbes &amp; Co. was incorporated in 1911.", "co"),
    "a generation after a comma": (
        "She is the granddaughter of Hank Williams, Sr., the daughter of Hank Williams, Jr. and half-sister of Hank "
        "Williams III.",
        "jr",
    ),
    "a name word before a person's name": (
        "Royal Brisbane International College\n\nIt is accredited with National Recognised Training and NEAS Australia.",
        "recognised training",
    ),
    "a relative clause with its own subject": (
        "North Carolina was invited to the 1986 Aloha Bowl, where they lost to Arizona.",
        ("aloha bowl", "LOSE_TO", "arizona"),
    ),
    "'which' of a person": (
        "Penny Publications is a magazine publisher, formed as the joinder of Dell Magazines, founded 1921 by George "
        "T. Delacorte, Jr., which had been acquired by Penny Press.",
        ("george t delacorte", "ACQUIRED_BY", "penny press"),
    ),
    "an apposition across a colon": (
        "Christian Bale reprises the lead role of Bruce Wayne, with a returning cast of allies: Michael Caine as "
        "Alfred Pennyworth, Gary Oldman as James Gordon.",
        ("michael caine", "ROLE_OF", "bruce wayne"),
    ),
    "a noun's preposition after a comma": (
        "The name was inherited from his maternal grandmother, Haer, daughter and heiress of Cynfyn, son of Cillyn.",
        ("haer", "GRANDMOTHER_OF", "cynfyn"),
    ),
    "a name's preposition after a comma": (
        "The Recovery of Aristotle refers to the copying of Aristotle's books from Greek into Latin, during the "
        "Middle Ages, of the Latin West.",
        ("middle ages", "OF", "latin west"),
    ),
    "a participle after a comma": (
        'Trevor LeBlanc is a fictional character on the Lifetime television series "Army Wives", portrayed by Drew '
        "Fuller.",
        ("army wives", "PORTRAYED_BY", "drew fuller"),
    ),
    # VERSION 7: the wrong relations of the VERSION 6 sample (relations-v6.jsonl), written again.
    "a number before the name": (
        "The four semifinalists qualified for the 2009 FIFA U-20 World Cup, which was hosted by Egypt.",
        ("fifa u 20 world cup", "HOSTED_BY", "egypt"),
    ),
    "a number right after the name": (
        "Kunia Camp, Hawaii\n\nKunia Camp is an unincorporated community on the island of Oahu. It lies along "
        "Hawaii Route 750 northwest of downtown Honolulu.",
        "hawaii route",
    ),
    "more name after a parenthesised acronym": (
        "Lusia Harris\n\nLusia Harris (born February 10, 1955) is a former American basketball player. She played "
        "for Delta State University and won three consecutive Association for Intercollegiate Athletics for Women "
        "(AIAW) National Championships, the predecessors to the NCAA championships, from 1975 to 1977.",
        "association for intercollegiate athletics for women",
    ),
    "half a quotation": (
        'Britain\'s first Olympic ski jumper, Eddie "The Eagle" Edwards, appears live on the show.',
        ("the eagle edwards", "JUMPER_OF", "britain"),
    ),
    "a preposition inside a name": (
        "Direct Action Committee\n\nThe Direct Action Committee (DAC) was a pacifist organization. It existed from "
        "1957 to 1961.",
        ("direct action committee", "EXIST_TO", "1957 to 1961"),
    ),
    "one title of office cut at 'of'": (
        "The Governor performs the same functions at the state level as does the Governor-General of Australia at "
        "the national level.",
        ("governor general", "OF", "australia"),
    ),
    "a pronoun for a lead named only by a cut name": (
        'Bleddyn ap Cynfyn\n\nBleddyn ap Cynfyn (Old Welsh: "Bledẏnt uab Kẏnỽẏn" ; 1073) was an 11th-century Welsh '
        "king. He became king of Powys on his brother's death in 1069.",
        "uab kẏnỽẏn",
    ),
}


@pytest.mark.parametrize("case", LEFT_OUT)
def test_doubtful_relations_are_left_out(extractor, case):
    text, wrong = LEFT_OUT[case]
    found = facts(extractor, text)
    if isinstance(wrong, tuple):
        assert wrong not in found, found
    else:
        assert wrong not in {k for s, _, o in found for k in (s, o)}, found


KEPT = {
    "the heading written again": (
        "Happy Bhag Jayegi\n\nHappy Bhag Jayegi is a 2016 Indian comedy film directed by Mudassar Aziz.",
        ("happy bhag jayegi", "DIRECTED_BY", "mudassar aziz"),
    ),
    "the heading and its own noun as subjects": (
        "Tornado outbreak of March 2–3, 2012\n\nOn March 2 and 3, 2012, a deadly tornado outbreak occurred over the "
        "Ohio Valley region.",
        ("tornado outbreak of march 2 3 2012", "OCCUR_ON", "march 2"),
    ),
    "a title before a person's name": (
        "President Barack Obama was born in Honolulu.",
        ("barack obama", "BORN_IN", "honolulu"),
    ),
    "a relative pronoun as the subject": (
        "Rudolph Giuliani, who was born in Brooklyn, was mayor of New York City.",
        ("rudolph giuliani", "BORN_IN", "brooklyn"),
    ),
    "an apposition after a comma": (
        "Tina Brown, the editor of Vanity Fair, moved to New York City.",
        ("tina brown", "EDITOR_OF", "vanity fair"),
    ),
    "a participle without a comma": (
        "Dune is a film directed by David Lynch.",
        ("dune", "DIRECTED_BY", "david lynch"),
    ),
    "a pronoun for a piece of the heading": (
        "Moses Ali\n\nMoses Ali (born April 1939) is a Ugandan politician. He served in the Cabinet of Uganda.",
        ("moses ali", "SERVE_IN", "cabinet of uganda"),
    ),
    "a common word that starts the sentence before a person's name": (
        "Businessman Ross Perot ran as candidate for the Reform Party with economist Pat Choate as his running mate.",
        ("ross perot", "RUN_WITH", "pat choate"),
    ),
    "a king of a country": (
        "Campaigns followed, such as those of King Sweyn Estrithson of Denmark in 1069.",
        ("sweyn estrithson", "OF", "denmark"),
    ),
}


@pytest.mark.parametrize("case", KEPT)
def test_the_same_facts_written_plainly_are_kept(extractor, case):
    text, right = KEPT[case]
    assert right in facts(extractor, text)


def test_an_entity_first_met_by_its_short_form_is_named_by_its_full_name(extractor):
    ex = extractor(
        Chunk(chunk_id="d#0", doc_id="d", index=0, text="Giuliani spoke. Rudolph Giuliani was born in Brooklyn.")
    )
    assert {e.key: e.name for e in ex.entities}["rudolph giuliani"] == "Rudolph Giuliani"
