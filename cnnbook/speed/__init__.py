"""The speed wing: measurements of the training loop, not used by the chapters' code.

* `bench`: ``python -m cnnbook bench``, cnnbook's loop against a faithful d2l-style loop on
  the same model and data, in one process, with their ratio;
* `d2l_reference`: that d2l-style loop (torchvision-style Dataset and DataLoader, a host copy
  and a sync per batch), kept apart so that it reads like the book it reproduces;
* `layouts`: one training step in NCHW against channels-last;
* `operators`: where a training step's time goes, operator by operator.
"""
