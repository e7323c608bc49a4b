"""Site furniture judged paragraph by paragraph from the page's own evidence (links, captions,
navigation, and trafilatura's precision mode), on real HTML through the extraction child's
function."""

from __future__ import annotations

from newsbeam.transforms.text import (covered_share, is_furniture, is_link_teaser,
                                      without_furniture)
from newsbeam.transforms.trafilatura_page import extract_page

STORY = [
    "Der Stadtrat hat am Dienstag nach einer langen und kontroversen Debatte beschlossen, die "
    "Gebühren für Kindergärten im kommenden Jahr nicht zu erhöhen.",
    "Die Opposition hatte eine Erhöhung um zehn Prozent gefordert, um das Defizit im Haushalt "
    "zu verringern; die Mehrheit lehnte das nach einer Anhörung der Eltern ab.",
    "Bürgermeisterin Anna Keller sagte, die Stadt wolle Familien in Zeiten steigender Preise "
    "nicht zusätzlich belasten, und kündigte Einsparungen an anderer Stelle an.",
    "Im Frühjahr soll der Rat über den Neubau von zwei Kindertagesstätten im Norden der Stadt "
    "entscheiden, für die das Land einen großen Teil der Kosten übernehmen will.",
]
TEASER = "Lesen Sie auch: Neue Buslinie verbindet Bahnhof und Klinik"
CREDIT = "Foto: Max Mustermann / Stadtbild-Agentur"


def _page() -> str:
    story = "".join(f"<p>{p}</p>" for p in STORY[:2])
    rest = "".join(f"<p>{p}</p>" for p in STORY[2:])
    return f"""<html><head><title>Keine höheren Kita-Gebühren</title></head><body>
    <article><h1>Keine höheren Kita-Gebühren</h1>
    <img src="rat.jpg" alt=""><p class="image-credit">{CREDIT}</p>
    {story}<p><a href="/bus">{TEASER}</a></p>{rest}
    <p>Die Sitzung war öffentlich; rund <a href="/protokoll">hundert Zuhörer</a> kamen.</p>
    </article></body></html>"""


def test_shares_and_shapes():
    assert covered_share("Lea más: Juan Carlos propone", ["Juan Carlos propone"]) > 0.6
    assert covered_share("nothing linked here", ["elsewhere"]) == 0.0
    assert is_link_teaser(TEASER, 1.0)
    # A sentence, a web address or a barely linked line is no teaser.
    assert not is_link_teaser("Mehr dazu lesen Sie auf unserer Seite.", 1.0)
    assert not is_link_teaser("https://www.openpetition.de/petition/online/gema", 1.0)
    assert not is_link_teaser(TEASER, 0.2)


def test_two_kinds_of_evidence_are_needed():
    # A link teaser goes only when precision mode drops it too; a caption goes either way.
    assert is_furniture(TEASER, 1.0, 0.0, 0.0, precision_keeps=False)
    assert not is_furniture(TEASER, 1.0, 0.0, 0.0, precision_keeps=True)
    assert is_furniture(CREDIT, 0.0, 1.0, 0.0, precision_keeps=True)
    # A long paragraph is never furniture by shape.
    assert not is_furniture(" ".join(STORY[:2] + STORY[:1]), 0.0, 0.0, 1.0,
                            precision_keeps=False)
    # A text that would lose most of itself keeps everything.
    assert without_furniture([TEASER, "Kurz."], {TEASER}) == [TEASER, "Kurz."]
    assert without_furniture(STORY + [TEASER], {TEASER}) == STORY


def test_extraction_names_the_pages_furniture():
    page = extract_page(_page().encode(), "https://stadt.example/kita")
    # trafilatura keeps both in the text; the evidence names them.
    assert TEASER in page["text"] and CREDIT in page["text"]
    assert set(page["furniture"]) == {TEASER, CREDIT}



def test_a_run_stores_the_text_without_it(capsys, tmp_path):
    from tests.conftest import read_dataset, run_cli
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "kita.html").write_text(_page())
    status, _ = run_cli(capsys, "run", "--input", str(tmp_path / "in"), "--output",
                        str(tmp_path / "out"), "--progress_interval_s", "0")
    assert status == 0
    (row,) = read_dataset(tmp_path / "out" / "articles").to_pylist()
    assert TEASER not in row["text"] and CREDIT not in row["text"]
    assert all(p in row["text"] for p in STORY)
