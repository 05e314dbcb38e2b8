"""Federation: verified pull-sync between nodes, relaying, scheduling, the demo.

Other packages use these modules (api/ only; nothing below api imports federation):

* ``federation.scheduler.FederationRuntime`` — started by ``hashfed serve``;
* ``federation.serving`` and ``federation.protocol`` — the ``/federation/v1`` answers;
* ``federation.cli.register`` — ``hashfed peer …``, ``sync``, ``demo``.

``client`` is the only module that dials out; ``sync`` the only one that mixes
network, verification (``trusted_state``, pure) and storage. See
docs/PROTOCOL.md, "Federation".
"""
