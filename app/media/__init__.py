"""Untrusted media from requests, bounded before the expensive step: images today (`images`: base64, data:
URIs and files decoded under byte, pixel and format limits; `fetch`: URLs fetched under the host allow-list,
address policy, timeouts and byte cap). The audio, video and PDF decoders the next families need belong here,
each with its limits declared once in the settings."""
