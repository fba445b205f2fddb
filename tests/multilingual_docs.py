"""Synthetic invoices and letters in the languages our users' drawers hold (no such real documents are
in shared/): German, Dutch, Polish, Spanish, Italian, Portuguese. Written for pagelens' tests and
measurements (tests/make_known_items.py), rendered to PDFs with a text layer by ``write_pdfs``.

Each document is a list of page texts (paragraphs separated by blank lines); names, addresses and
numbers are invented.
"""

from __future__ import annotations

from pathlib import Path

DOCS: dict[str, dict[str, list[str]]] = {
    "de": {
        "syn_rechnung_moebelhaus_de.pdf": [
            "Möbelhaus Krämer GmbH, Lindenstraße 17, 34117 Kassel\n\nRechnung Nr. 2024-0815\n\n"
            "Sehr geehrte Frau Hoffmann, für die Lieferung vom 12. März berechnen wir Ihnen folgende Positionen: "
            "einen Esstisch aus Eichenholz, sechs gepolsterte Stühle mit Armlehne und eine Kommode mit drei "
            "Schubladen. Die Montage in Ihrer Wohnung wurde von unserem Kundendienst übernommen.\n\n"
            "Zwischensumme 3.480,00 EUR, Umsatzsteuer 19 % 661,20 EUR, Gesamtbetrag 4.141,20 EUR.\n\n"
            "Bitte überweisen Sie den Betrag innerhalb von vierzehn Tagen auf unser Konto bei der Sparkasse "
            "Kassel. Bei Zahlungsverzug berechnen wir Mahngebühren.",
            "Allgemeine Geschäftsbedingungen\n\nDie gelieferte Ware bleibt bis zur vollständigen Bezahlung unser "
            "Eigentum. Reklamationen wegen sichtbarer Mängel müssen innerhalb einer Woche schriftlich gemeldet "
            "werden. Für Kratzer, die beim Transport durch den Kunden entstehen, übernehmen wir keine Haftung.\n\n"
            "Gutscheine können nicht bar ausgezahlt werden. Die Garantie für Polstermöbel beträgt zwei Jahre ab "
            "Lieferdatum. Gerichtsstand ist Kassel.",
        ],
        "syn_mahnung_stadtwerke_de.pdf": [
            "Stadtwerke Heidelberg, Kurfürstenanlage 42, 69115 Heidelberg\n\nZahlungserinnerung\n\n"
            "Kundennummer 7734219. Leider konnten wir für die Abrechnung des Stromverbrauchs im Zeitraum Januar "
            "bis Juni noch keinen Zahlungseingang feststellen. Der offene Betrag von 312,48 EUR war am 30. Juli "
            "fällig.\n\nFalls Sie die Zahlung inzwischen veranlasst haben, betrachten Sie dieses Schreiben bitte "
            "als gegenstandslos. Andernfalls bitten wir um Ausgleich bis zum 15. August. Ihren Zählerstand "
            "können Sie bequem im Kundenportal eintragen.",
        ],
    },
    "nl": {
        "syn_factuur_drukkerij_nl.pdf": [
            "Drukkerij De Vries B.V., Keizersgracht 221, 1016 DV Amsterdam\n\nFactuur 2024-311\n\n"
            "Geachte heer Jansen, hierbij ontvangt u de factuur voor het drukwerk dat wij op 4 april hebben "
            "geleverd: vijfhonderd folders op gerecycled papier, tweehonderd visitekaartjes en vijftig posters "
            "voor de voorjaarsbeurs. De ontwerpkosten zijn volgens de offerte in rekening gebracht.\n\n"
            "Subtotaal 1.245,00 EUR, btw 21% 261,45 EUR, totaal te betalen 1.506,45 EUR.\n\n"
            "Wij verzoeken u het bedrag binnen dertig dagen over te maken op rekeningnummer NL91 ABNA 0417 1643 "
            "00 onder vermelding van het factuurnummer.",
            "Leveringsvoorwaarden\n\nKlachten over geleverde drukwerken moeten binnen acht dagen na ontvangst "
            "schriftelijk worden gemeld. Kleine afwijkingen in kleur ten opzichte van de proefdruk geven geen "
            "recht op korting. Bij te late betaling zijn wij gerechtigd de wettelijke rente en incassokosten "
            "te berekenen.\n\nOp al onze offertes en overeenkomsten is Nederlands recht van toepassing.",
        ],
        "syn_aanmaning_waterbedrijf_nl.pdf": [
            "Waterbedrijf Groningen, Postbus 24, 9700 AA Groningen\n\nBetalingsherinnering\n\n"
            "Klantnummer 5521987. Volgens onze administratie is de jaarafrekening voor uw waterverbruik nog "
            "niet voldaan. Het openstaande bedrag van 187,30 EUR had op 1 september betaald moeten zijn.\n\n"
            "Heeft u inmiddels betaald, dan kunt u deze herinnering als niet verzonden beschouwen. Zo niet, "
            "dan vragen wij u vriendelijk het bedrag binnen veertien dagen over te maken. Uw meterstand kunt "
            "u doorgeven via onze website.",
        ],
    },
    "pl": {
        "syn_faktura_hurtownia_pl.pdf": [
            "Hurtownia Budowlana Kowalski Sp. z o.o., ul. Długa 15, 80-831 Gdańsk\n\nFaktura VAT nr 147/2024\n\n"
            "Szanowny Panie Nowak, w załączeniu przesyłamy fakturę za materiały budowlane dostarczone na budowę "
            "w dniu 18 marca: cement portlandzki w workach, płyty gipsowe, bloczki betonowe oraz farbę "
            "elewacyjną. Transport na plac budowy został wliczony w cenę.\n\n"
            "Wartość netto 8.920,00 zł, podatek VAT 23% 2.051,60 zł, razem do zapłaty 10.971,60 zł.\n\n"
            "Prosimy o uregulowanie należności przelewem na rachunek bankowy w terminie czternastu dni od daty "
            "wystawienia faktury.",
            "Warunki sprzedaży\n\nReklamacje dotyczące ilości dostarczonego towaru należy zgłaszać kierowcy "
            "przy rozładunku. Wady ukryte materiałów budowlanych klient zgłasza pisemnie w ciągu siedmiu dni. "
            "W przypadku opóźnienia w płatności naliczamy odsetki ustawowe za każdy dzień zwłoki.\n\n"
            "Towar pozostaje własnością sprzedawcy do chwili pełnej zapłaty. Sądem właściwym jest sąd w Gdańsku.",
        ],
        "syn_wezwanie_energetyka_pl.pdf": [
            "Energetyka Miejska Kraków, ul. Wielicka 44, 30-552 Kraków\n\nWezwanie do zapłaty\n\n"
            "Numer klienta 3309871. Uprzejmie informujemy, że do dnia dzisiejszego nie odnotowaliśmy wpłaty za "
            "rozliczenie zużycia energii elektrycznej za okres od stycznia do czerwca. Kwota zaległości wynosi "
            "268,15 zł i była płatna do 31 lipca.\n\nJeżeli płatność została już dokonana, prosimy uznać to "
            "pismo za nieaktualne. W przeciwnym razie prosimy o wpłatę do 20 sierpnia. Odczyt licznika można "
            "przekazać w portalu klienta.",
        ],
    },
    "es": {
        "syn_factura_ferreteria_es.pdf": [
            "Ferretería Martínez S.L., Calle Mayor 23, 28013 Madrid\n\nFactura número 2024/0457\n\n"
            "Estimado señor García: le remitimos la factura correspondiente a los productos entregados el 9 de "
            "mayo: herramientas eléctricas, tornillos de acero inoxidable, pinturas para exteriores y una "
            "escalera plegable de aluminio. El transporte a domicilio no tiene coste adicional.\n\n"
            "Base imponible 742,00 EUR, IVA 21% 155,82 EUR, total a pagar 897,82 EUR.\n\n"
            "Rogamos efectúe el pago mediante transferencia bancaria en un plazo de treinta días. Las "
            "devoluciones se aceptan con el ticket original.",
        ],
    },
    "it": {
        "syn_fattura_tipografia_it.pdf": [
            "Tipografia Bianchi S.r.l., Via Garibaldi 58, 10122 Torino\n\nFattura n. 312/2024\n\n"
            "Gentile signora Rossi, le inviamo la fattura relativa ai lavori di stampa consegnati il 22 aprile: "
            "cataloghi rilegati, biglietti da visita su carta riciclata e manifesti per la fiera di primavera. "
            "Le spese di progettazione grafica sono indicate nel preventivo accettato.\n\n"
            "Imponibile 1.860,00 EUR, IVA 22% 409,20 EUR, totale da pagare 2.269,20 EUR.\n\n"
            "La preghiamo di effettuare il pagamento tramite bonifico bancario entro sessanta giorni dalla data "
            "della fattura.",
        ],
    },
    "pt": {
        "syn_fatura_oficina_pt.pdf": [
            "Oficina Mecânica Ferreira Lda., Rua Augusta 101, 1100-053 Lisboa\n\nFatura n.º 2024/218\n\n"
            "Exmo. Senhor Costa, enviamos a fatura referente à reparação do seu automóvel concluída em 6 de "
            "junho: substituição das pastilhas de travão, mudança de óleo e filtros, alinhamento da direção e "
            "inspeção dos pneus. As peças substituídas ficam à sua disposição durante uma semana.\n\n"
            "Valor sem IVA 415,00 EUR, IVA 23% 95,45 EUR, total a pagar 510,45 EUR.\n\n"
            "Agradecemos o pagamento por transferência bancária no prazo de quinze dias.",
        ],
    },
}


def _html(text: str) -> str:
    import html

    parts = [p.strip() for p in text.split("\n\n") if p.strip()]
    out = [f"<h3>{html.escape(parts[0])}</h3>"] + [f"<p>{html.escape(p)}</p>" for p in parts[1:]]
    return "".join(out)


def write_pdfs(out_dir: Path, languages: tuple[str, ...] | None = None) -> list[Path]:
    """Write the synthetic documents (A4 pages with a text layer) into ``out_dir``; returns their paths."""
    import pymupdf

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for lang, docs in DOCS.items():
        if languages is not None and lang not in languages:
            continue
        for name, pages in docs.items():
            target = out_dir / name
            if not target.exists():
                doc = pymupdf.open()
                for text in pages:
                    page = doc.new_page(width=595, height=842)
                    page.insert_htmlbox(pymupdf.Rect(60, 60, 535, 790), _html(text))
                doc.save(target, deflate=True, garbage=3)
                doc.close()
            written.append(target)
    return written
