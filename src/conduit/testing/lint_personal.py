"""The lint of personal data: sealed under a key per subject, forgotten with its key.

::

    from conduit.testing.lint_personal import *  # noqa: F403

For an engine's ``subject_keys``, ``add_subject_keys``, ``forget_subject`` and
``subject_key_page``. Needs the ``store`` and ``make_store`` fixtures (see
:mod:`conduit.testing`).
"""

from conduit.testing import contract_forget
from conduit.testing.contract_forget import *  # noqa: F403

MODULES = [contract_forget]
"""The kit's modules this lint gathers."""

__all__ = [name for module in MODULES for name in module.__all__]
