"""Carveout for LiteLLM's proxy (DESIGN §14): a callback that asks Carveout before each call
and records each call's tokens as an access after it.

``pip install 'carveout[litellm]'``, then in the proxy's config::

    litellm_settings:
      callbacks: carveout_litellm.callback.proxy_handler

configured by ``CARVEOUT_ENFORCEMENT_URL``, ``CARVEOUT_GATEWAY_TOKEN`` and
``CARVEOUT_KAFKA_BOOTSTRAP`` (:mod:`.settings`). This package's other modules need no
LiteLLM: :mod:`.attributes` reads an access's attributes, :mod:`.publisher` records them.
"""
