"""Where the rows come from: data sources and the backend each one goes to
(:mod:`hlm.data.source`), and level coding (:mod:`hlm.data.codes`)."""
