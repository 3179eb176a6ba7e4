"""The core both faces of Conduit share: operations as generators of effects, and the
runtimes that drive them (:mod:`conduit.core.effects`), group commit
(:mod:`conduit.core.group`), engines bound to a runtime (:mod:`conduit.core.bound`)."""
