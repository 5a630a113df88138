"""The analytical performance model (``bitmod-sim``): whole LLM workloads in milliseconds.

* :mod:`.model`: workloads, accelerators, :func:`~.model.simulate`;
* :mod:`.report`: sweeps, summaries, tables and plots.
"""
