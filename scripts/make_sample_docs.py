"""Build the demo's sample collection: invoices and reports in five languages, a scanned page, a
multi-page report with a table and a chart, and (when python-docx is installed) a Word document.

``python scripts/make_sample_docs.py OUTDIR`` writes the documents and ``OUTDIR/questions.json`` (one
question per document, with the answer it should find). Everything is drawn here with PyMuPDF,
matplotlib and Pillow, from fixed text and a fixed random seed: the same bytes on every run (so a
second `make demo` finds the documents already indexed), and nothing to download. About 0.4 MB.
"""

from __future__ import annotations

import io
import json
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

A4 = (595, 842)  # pt
CSS = """
* { font-family: sans-serif; font-size: 10.5pt; color: #222; }
h1 { font-size: 20pt; color: #123c69; margin-bottom: 2pt; }
h2 { font-size: 13pt; color: #123c69; margin-top: 10pt; }
.muted { color: #666; font-size: 9pt; }
table { border-collapse: collapse; width: 100%; }
th { background-color: #dfe7f0; text-align: left; padding: 4pt; border: 1px solid #9aa; }
td { padding: 4pt; border: 1px solid #bbb; }
.total td { font-weight: bold; background-color: #f3f3f3; }
.right { text-align: right; }
"""
FIXED_DATE = "D:20261201120000+00'00'"


@dataclass(frozen=True)
class Sample:
    """One document of the sample collection and the question the demo asks about it."""

    file: str
    language: str
    kind: str
    question: str
    answer: str


@dataclass(frozen=True)
class Invoice:
    file: str
    language: str
    labels: dict[str, str]
    seller: str
    buyer: str
    number: str
    date: str
    due: str
    currency: str
    lines: list[tuple[str, int, float]]
    vat_rate: float
    question: str
    number_format: str  # "en" 1,234.50 | "eu" 1.234,50 | "pl" 1 234,50


def money(value: float, style: str) -> str:
    text = f"{value:,.2f}"
    if style == "eu":
        return text.replace(",", "X").replace(".", ",").replace("X", ".")
    if style == "pl":
        return text.replace(",", " ").replace(".", ",")
    return text


INVOICES = [
    Invoice(
        "invoice_northwind_en.pdf", "en",
        {"title": "INVOICE", "no": "Invoice no.", "date": "Date", "due": "Due date", "bill": "Bill to",
         "item": "Description", "qty": "Qty", "price": "Unit price", "amount": "Amount", "net": "Subtotal",
         "vat": "Sales tax", "total": "Total amount due", "pay": "Please pay by bank transfer to IBAN "
         "GB33 BUKB 2020 1555 5555 55 within 30 days."},
        "Northwind Traders Ltd, 12 Harbour Street, Bristol BS1 4QA, United Kingdom",
        "Contoso Pharmaceuticals, 400 Elm Avenue, Springfield, IL 62701, USA",
        "NW-2026-0917", "2026-11-03", "2026-12-03", "USD",
        [("Cloud hosting, November 2026", 1, 1850.00), ("Support plan (premium)", 1, 1200.00),
         ("Data transfer overage (TB)", 3, 125.00)],
        0.25, "What is the total amount due on the Northwind Traders invoice?", "en",
    ),
    Invoice(
        "rechnung_mueller_de.pdf", "de",
        {"title": "RECHNUNG", "no": "Rechnungsnummer", "date": "Rechnungsdatum", "due": "Zahlbar bis",
         "bill": "Rechnungsempfänger", "item": "Leistung", "qty": "Menge", "price": "Einzelpreis",
         "amount": "Betrag", "net": "Nettobetrag", "vat": "USt. 19 %", "total": "Gesamtbetrag",
         "pay": "Bitte überweisen Sie den Gesamtbetrag ohne Abzug auf das Konto DE89 3704 0044 0532 0130 00. "
         "USt-IdNr. DE123456789."},
        "Müller & Söhne GmbH, Schlossallee 7, 80331 München",
        "Bäckerei Schröder KG, Hauptstraße 12, 50667 Köln",
        "R-2026-1184", "14.11.2026", "28.11.2026", "EUR",
        [("Wartung Backofen, 6 Stunden", 6, 95.00), ("Ersatzteil Heizspirale", 2, 312.50),
         ("Anfahrtspauschale", 1, 45.00)],
        0.19, "Wie hoch ist der Gesamtbetrag der Rechnung von Müller & Söhne?", "eu",
    ),
    Invoice(
        "factuur_vandijk_nl.pdf", "nl",
        {"title": "FACTUUR", "no": "Factuurnummer", "date": "Factuurdatum", "due": "Vervaldatum",
         "bill": "Factuuradres", "item": "Omschrijving", "qty": "Aantal", "price": "Prijs", "amount": "Bedrag",
         "net": "Subtotaal", "vat": "Btw 21%", "total": "Totaal te betalen",
         "pay": "Gelieve het totaalbedrag binnen 14 dagen over te maken op NL91 ABNA 0417 1643 00 "
         "onder vermelding van het factuurnummer."},
        "Van Dijk Installatietechniek B.V., Keizersgracht 221, 1016 DV Amsterdam",
        "Gemeente Utrecht, Stadsplateau 1, 3521 AZ Utrecht",
        "2026-0456", "20-11-2026", "04-12-2026", "EUR",
        [("Installatie warmtepomp", 1, 6400.00), ("Arbeidsuren monteur", 12, 62.50)],
        0.21, "Wat is het totaalbedrag van de factuur van Van Dijk Installatietechniek?", "eu",
    ),
    Invoice(
        "faktura_kowalski_pl.pdf", "pl",
        {"title": "FAKTURA VAT", "no": "Numer faktury", "date": "Data wystawienia", "due": "Termin płatności",
         "bill": "Nabywca", "item": "Nazwa towaru lub usługi", "qty": "Ilość", "price": "Cena netto",
         "amount": "Wartość netto", "net": "Razem netto", "vat": "VAT 23%", "total": "Do zapłaty",
         "pay": "Zapłata przelewem na rachunek PL61 1090 1014 0000 0712 1981 2874. NIP sprzedawcy: 525-000-12-34."},
        "Kowalski i Wspólnicy Sp. z o.o., ul. Złota 44, 00-120 Warszawa",
        "Żabka Polska Sp. z o.o., ul. Święty Marcin 29/8, 61-806 Poznań",
        "FV/2026/11/087", "2026-11-21", "2026-12-05", "PLN",
        [("Audyt bezpieczeństwa sieci", 1, 8500.00), ("Szkolenie pracowników (osobodzień)", 3, 1450.00)],
        0.23, "Jaka jest kwota do zapłaty na fakturze od Kowalski i Wspólnicy?", "pl",
    ),
]


def _save(doc, path: Path) -> None:  # noqa: ANN001 - a pymupdf.Document
    doc.set_metadata({"creationDate": FIXED_DATE, "modDate": FIXED_DATE, "producer": "pagelens samples",
                      "creator": "scripts/make_sample_docs.py"})
    doc.save(path, garbage=3, deflate=True, no_new_id=True)
    doc.close()


def _html_page(doc, html: str, margin: int = 50):  # noqa: ANN001, ANN202
    import pymupdf

    page = doc.new_page(width=A4[0], height=A4[1])
    spare, _ = page.insert_htmlbox(pymupdf.Rect(margin, margin, A4[0] - margin, A4[1] - margin), html, css=CSS)
    if spare < 0:
        raise RuntimeError("sample page content does not fit on one page")
    return page


def invoice_html(inv: Invoice) -> tuple[str, str]:
    """(HTML of the invoice, the total due as printed)."""
    lab, fmt = inv.labels, inv.number_format
    net = sum(q * p for _, q, p in inv.lines)
    vat = round(net * inv.vat_rate, 2)
    total = f"{money(net + vat, fmt)} {inv.currency}"
    rows = "".join(f"<tr><td>{d}</td><td class='right'>{q}</td><td class='right'>{money(p, fmt)}</td>"
                   f"<td class='right'>{money(q * p, fmt)}</td></tr>" for d, q, p in inv.lines)
    html = f"""
<h1>{lab['title']}</h1><p class="muted">{inv.seller}</p>
<table><tr><td><b>{lab['no']}</b><br/>{inv.number}</td><td><b>{lab['date']}</b><br/>{inv.date}</td>
<td><b>{lab['due']}</b><br/>{inv.due}</td></tr></table>
<h2>{lab['bill']}</h2><p>{inv.buyer}</p>
<table><tr><th>{lab['item']}</th><th class='right'>{lab['qty']}</th><th class='right'>{lab['price']}</th>
<th class='right'>{lab['amount']}</th></tr>{rows}
<tr><td colspan="3">{lab['net']}</td><td class='right'>{money(net, fmt)} {inv.currency}</td></tr>
<tr><td colspan="3">{lab['vat']}</td><td class='right'>{money(vat, fmt)} {inv.currency}</td></tr>
<tr class="total"><td colspan="3">{lab['total']}</td><td class='right'>{total}</td></tr></table>
<p style="margin-top: 18pt">{lab['pay']}</p>"""
    return html, total


def make_invoice(inv: Invoice, outdir: Path) -> Sample:
    import pymupdf

    html, total = invoice_html(inv)
    doc = pymupdf.open()
    _html_page(doc, html)
    _save(doc, outdir / inv.file)
    return Sample(inv.file, inv.language, "invoice", inv.question, total)


QUARTERS = [("T1", 3.42), ("T2", 3.95), ("T3", 4.61), ("T4", 4.18)]  # M EUR


def _chart_png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.0), dpi=110)
    names, values = zip(*QUARTERS, strict=True)
    bars = ax.bar(names, values, color=["#7aa6c2", "#7aa6c2", "#123c69", "#7aa6c2"])
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2)
    ax.set_ylabel("M EUR")
    ax.set_title("Chiffre d'affaires par trimestre 2026")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def make_report(outdir: Path) -> Sample:
    """A three-page French annual report: text, a table of regions, a bar chart of the quarters."""
    import pymupdf

    name = "rapport_annuel_lumiere_fr.pdf"
    doc = pymupdf.open()
    _html_page(doc, """
<h1>Lumière Énergie SA</h1><p class="muted">Rapport annuel 2026 · Lyon, décembre 2026</p>
<h2>1. Synthèse</h2>
<p>L'exercice 2026 a été marqué par une croissance soutenue de l'activité de services énergétiques.
Le chiffre d'affaires consolidé atteint 16,16 millions d'euros, en hausse de 14 % par rapport à 2025.
La marge opérationnelle progresse à 11,2 %, portée par les contrats de maintenance pluriannuels.</p>
<p>Le conseil d'administration propose un dividende de 0,85 euro par action.</p>
<h2>2. Faits marquants</h2>
<p>Ouverture d'une agence à Marseille en mars, mise en service de trois centrales solaires en toiture
pour des collectivités, et signature d'un accord-cadre avec la région Auvergne-Rhône-Alpes.</p>
<h2>3. Perspectives</h2>
<p>Pour 2027, la société vise un chiffre d'affaires de 18 millions d'euros et le recrutement de
40 techniciens.</p>""")
    regions = [("Auvergne-Rhône-Alpes", "7,84", "48 %"), ("Provence-Alpes-Côte d'Azur", "4,21", "26 %"),
               ("Occitanie", "2,66", "17 %"), ("Île-de-France", "1,45", "9 %")]
    rows = "".join(f"<tr><td>{r}</td><td class='right'>{v}</td><td class='right'>{s}</td></tr>" for r, v, s in regions)
    _html_page(doc, f"""
<h2>4. Chiffre d'affaires par région</h2>
<table><tr><th>Région</th><th class='right'>CA 2026 (M EUR)</th><th class='right'>Part</th></tr>{rows}
<tr class="total"><td>Total</td><td class='right'>16,16</td><td class='right'>100 %</td></tr></table>
<p style="margin-top: 12pt">La région Auvergne-Rhône-Alpes reste le premier marché du groupe ; la
Provence-Alpes-Côte d'Azur progresse le plus vite (+31 %).</p>""")
    page = _html_page(doc, """
<h2>5. Évolution trimestrielle</h2>
<p>Le troisième trimestre (T3) a été le plus fort de l'année avec 4,61 M EUR, grâce à la mise en
service des centrales solaires ; le premier trimestre (T1) reste le plus faible.</p>""")
    page.insert_image(pymupdf.Rect(60, 190, 535, 430), stream=_chart_png())
    _save(doc, outdir / name)
    return Sample(name, "fr", "report (3 pages, table, chart)",
                  "Quel trimestre a eu le chiffre d'affaires le plus élevé chez Lumière Énergie ?", "T3 (4,61 M EUR)")


def make_scan(outdir: Path) -> Sample:
    """A letter printed, scanned and saved as an image-only PDF (no text layer): slightly rotated,
    grey, speckled, JPEG-compressed."""
    import pymupdf
    from PIL import Image, ImageFilter

    name = "scan_lease_letter_en.pdf"
    src = pymupdf.open()
    page = _html_page(src, """
<p class="muted">Harbourside Property Management · 3 Quay Road · Portsmouth PO1 3LJ</p>
<p style="margin-top: 20pt">Ms Amelia Hart<br/>Flat 4, 19 Victoria Road<br/>Southsea PO5 2DA</p>
<p style="margin-top: 16pt">17 October 2026</p>
<h2>Renewal of your tenancy agreement</h2>
<p>Dear Ms Hart,</p>
<p>We are pleased to confirm the renewal of your tenancy of Flat 4, 19 Victoria Road. The new term
starts on 1 January 2027 and the lease ends on 31 December 2027.</p>
<p>The monthly rent will be GBP 1,150, payable on the first day of each month. Your deposit of
GBP 1,325 remains protected with the Deposit Protection Service.</p>
<p>Please sign and return the enclosed copy by 15 November 2026.</p>
<p style="margin-top: 16pt">Yours sincerely,<br/><br/>Daniel Okafor<br/>Lettings Manager</p>""", margin=70)
    pix = page.get_pixmap(dpi=120, colorspace=pymupdf.csGRAY)
    src.close()
    image = Image.frombytes("L", (pix.width, pix.height), pix.samples)
    rng = random.Random(4711)
    image = image.rotate(0.7, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=255)
    pixels = image.load()
    for _ in range(image.width * image.height // 180):  # dust and toner speckles
        x, y = rng.randrange(image.width), rng.randrange(image.height)
        pixels[x, y] = rng.choice((0, 60, 120))
    image = image.filter(ImageFilter.GaussianBlur(0.6)).point(lambda v: min(255, int(v * 0.93) + 10))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=60)
    doc = pymupdf.open()
    out = doc.new_page(width=A4[0], height=A4[1])
    out.insert_image(out.rect, stream=buf.getvalue())
    _save(doc, outdir / name)
    return Sample(name, "en", "scanned letter (image only, no text layer)",
                  "When does the lease of Flat 4, 19 Victoria Road end?", "31 December 2027")


def make_docx(outdir: Path) -> Sample | None:
    """Meeting minutes as a Word document (converted to PDF by LibreOffice when indexed); None without
    python-docx."""
    try:
        import docx
    except ImportError:
        return None
    name = "protokoll_betriebsrat_de.docx"
    document = docx.Document()
    import datetime

    fixed = datetime.datetime(2026, 12, 1, 12, 0, 0)
    document.core_properties.created = document.core_properties.modified = fixed
    document.core_properties.last_printed = fixed
    document.core_properties.author = "pagelens samples"
    document.add_heading("Protokoll der Betriebsratssitzung", 0)
    document.add_paragraph("Datum: 12. November 2026 · Ort: Besprechungsraum 3, Hamburg")
    document.add_heading("Beschlüsse", 1)
    table = document.add_table(rows=1, cols=3)
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, ("Nr.", "Beschluss", "Abstimmung"), strict=True):
        cell.text = text
    for row in (("1", "Einführung der Vier-Tage-Woche ab 1. März 2027 (Pilotphase)", "9 ja, 2 nein"),
                ("2", "Budget für Weiterbildung: 85.000 EUR", "einstimmig"),
                ("3", "Nächste Sitzung am 10. Dezember 2026", "einstimmig")):
        for cell, text in zip(table.add_row().cells, row, strict=True):
            cell.text = text
    document.add_paragraph("Protokoll: Jana Petersen")
    path = outdir / name
    document.save(path)
    _normalise_zip(path)
    return Sample(name, "de", "Word document (DOCX, converted with LibreOffice)",
                  "Ab wann gilt die Vier-Tage-Woche laut Protokoll des Betriebsrats?", "1. März 2027 (Pilotphase)")


def _normalise_zip(path: Path) -> None:
    """Fixed timestamps in the ZIP members (python-docx stamps today's date): the same bytes every run."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(path, "w") as out:
        for info, data in members:
            fixed = zipfile.ZipInfo(info.filename, date_time=(2026, 12, 1, 12, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(fixed, data)


def build_samples(outdir: Path, office: bool = True) -> list[Sample]:
    """Write the sample documents and ``questions.json`` into ``outdir``; returns them in order.

    ``office`` False leaves out the Word document (for machines without LibreOffice)."""
    outdir.mkdir(parents=True, exist_ok=True)
    samples = [make_invoice(inv, outdir) for inv in INVOICES]
    samples += [make_report(outdir), make_scan(outdir)]
    if office:
        word = make_docx(outdir)
        if word is not None:
            samples.append(word)
    (outdir / "questions.json").write_text(
        json.dumps([asdict(s) for s in samples], ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return samples


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/make_sample_docs.py OUTDIR")
    for sample in build_samples(Path(sys.argv[1])):
        print(f"{sample.file}: {sample.kind} ({sample.language})")
