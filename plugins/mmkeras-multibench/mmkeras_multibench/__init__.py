"""MultiBench's processed data sets for mmkeras, read from the files users hold, as published.

Registered in the ``mmkeras.datasets`` entry-point group:

- ``affect``: CMU-MOSI, CMU-MOSEI, UR-FUNNY ("humor") and MUsTARD ("sarcasm") pickles
  (``train``/``valid``/``test``, each with ``text``, ``audio``, ``vision``, ``labels``);
- ``mimic``: MIMIC-III's ``im.pk`` (static admission features, a 24-hour time series, mortality
  and ICD-9 labels), split as MultiBench splits it;
- ``avmnist``: AV-MNIST's ``image/`` and ``audio/`` ``.npy`` files with their labels.

Nothing is downloaded. Without a ``path`` each dataset writes and reads small stand-in files in
exactly the published layout (:mod:`mmkeras_multibench.standin`), so recipes run anywhere.
"""

from __future__ import annotations

__version__ = "0.1.0"
