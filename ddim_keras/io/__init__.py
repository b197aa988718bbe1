"""Files: the run directory (:mod:`~ddim_keras.io.run_dir`), loading a trained model
(:mod:`~ddim_keras.io.loading`), durable writes (:mod:`~ddim_keras.core.durable`) and
pictures (:mod:`~ddim_keras.io.images`)."""
