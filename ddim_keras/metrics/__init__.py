"""Measuring samples: KID (:mod:`~ddim_keras.metrics.kid`), the shapes classifier behind
the offline KID (:mod:`~ddim_keras.metrics.shapes_classifier`), and the evaluation of a
trained model against validation images (:mod:`~ddim_keras.metrics.evaluation`)."""
