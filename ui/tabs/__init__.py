"""The web UI's tabs, one builder per tab: ``ask`` (questions, answers, cited pages, similarity map),
``documents`` (uploads, their progress, the documents of a collection) and ``collections`` (create, list,
delete). Each ``build_*`` lays its components out inside the current ``gr.Blocks`` and returns them in a
small dataclass; its ``wire`` method connects their events once every tab exists (``pagelens.ui.screen``)."""
