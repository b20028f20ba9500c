"""The model language: model files (``.sdm``) read into a ``Model``, every error positioned."""
