"""The training options: each declared once, in its group's module (``groups/``), joined by ``TrainConfig``
(``options.py``); how declarations work (``declaration.py``); their choices and per-dataset defaults
(``choices.py``); rules between options (``relations.py``); what a run takes from its data's manifest
(``dataset_fit.py``); parsing of values; MLflow's tracking URI, kept without its password (``tracking_uri.py``);
and the resolved configuration (``resolved.py``)."""
