"""Typed values <-> JSON values, driven by the classes' annotations.

Encoding looks at the values: an aware ``datetime``, a ``date`` or a ``time``
becomes its ISO text (with its UTC offset), a ``UUID`` and a ``Decimal`` their
text, an enum member its value, a tuple or a set a list, a dataclass or a
pydantic model an object (a model's fields go through this same codec, so its
values get the same checks; only values of types that pydantic alone knows
take pydantic's own JSON form). Pydantic reads UTC offsets to the minute only:
inside a model, a datetime whose offset has seconds is stored in UTC (the same
instant, so it reads back equal), and such a ``time`` is refused.

Decoding looks at the annotations of the class it builds, so that the stored
JSON holds no type tags: ``"2024-05-01T10:00:00+02:00"`` becomes a
``datetime`` because the field is annotated ``datetime``.

Decoders are compiled once per class; a value that does not fit raises
:class:`Mismatch`, which names the field (``address.zip``, ``tags[2]``).

The package's modules: :mod:`.models` (what a typed value is, and
:class:`Mismatch`), :mod:`.encoding` (values to JSON) and :mod:`.decoding`
(JSON to the annotated types).
"""

from conduit.typed_codec.decoding import Decoder, class_decoder, decoder_for
from conduit.typed_codec.encoding import personal_fields, to_json
from conduit.typed_codec.models import Mismatch, is_model_class, is_typed

__all__ = [
    "Decoder",
    "Mismatch",
    "class_decoder",
    "decoder_for",
    "is_model_class",
    "is_typed",
    "personal_fields",
    "to_json",
]
