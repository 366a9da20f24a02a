"""The ranking check: how well a trained supernet (and each training-free proxy) orders archs against training
them alone (``nas supernet rank``): ``check`` runs it, ``jobs`` holds one stand-alone training, ``stats`` the
rank statistics with their intervals, ``report`` the text form."""
