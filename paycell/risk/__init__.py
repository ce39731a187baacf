"""The risk engine's model side: features (features.py), synthetic labelled history
(synthetic.py), the platform's history as training data (history.py), training and evaluation
(train.py), safe storage (model_io.py), promotion (promote.py), a training run (retrain.py), and
online scoring (scorer.py over compiled.py)."""
