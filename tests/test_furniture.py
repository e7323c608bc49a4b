"""Site furniture judged paragraph by paragraph from the page's own evidence (link density within
the paragraph's block, figure captions and credit lines), on real HTML through the extraction
child's function and through a real run."""

from __future__ import annotations

import lxml.html

from newsbeam.transforms.text import (Evidence, covered_share, fingerprint_text, is_furniture,
                                      without_furniture)
from newsbeam.transforms.trafilatura_page import block_link_densities, extract_page

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


def test_link_density_is_read_within_each_block():
    tree = lxml.html.fromstring(
        '<div><p><a href="/a">Lea más: Juan Carlos propone</a> hoy</p>'
        '<p>El consejo <a href="/b">aprobó</a> el presupuesto de la ciudad.</p>'
        '<ul><li><a href="/c">Otra noticia</a></li></ul></div>')
    densities = block_link_densities(tree)
    assert densities[fingerprint_text("Lea más: Juan Carlos propone hoy")] > 0.8
    assert densities[fingerprint_text("El consejo aprobó el presupuesto de la ciudad.")] < 0.2
    assert densities[fingerprint_text("Otra noticia")] == 1.0
    assert covered_share("Foto: Max / Agentur", ["Foto: Max / Agentur"]) == 1.0
    assert covered_share("nothing captioned here", ["elsewhere"]) == 0.0


def test_furniture_by_evidence_and_shape():
    assert is_furniture(TEASER, Evidence(link_density=1.0))
    assert is_furniture(CREDIT, Evidence(caption_share=1.0))
    assert not is_furniture(TEASER, Evidence(link_density=0.3))
    # A web address given in the text, or a long paragraph, is never furniture.
    assert not is_furniture("https://www.openpetition.de/petition/online/gema",
                            Evidence(link_density=1.0))
    assert not is_furniture(" ".join(STORY[:3]), Evidence(link_density=1.0))
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
