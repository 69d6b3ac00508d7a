"""Framework adapters, shipped as ``mlflow_green.integrations``.

This is the only place torch, lightning, keras and tensorflow are imported; each submodule
imports its framework and raises an ImportError naming the extra to install when it is missing.
"""
