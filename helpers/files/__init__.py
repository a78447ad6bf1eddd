"""Reading files defensively: text encodings, strict JSON, atomic writes (``fileio``) and image
decoding under a pixel budget (``images``). The core imports these; they import no other part
of ``helpers``."""
