"""The one table of wire formats: format name -> its translation.format.WireFormat object.

A new wire format is a module exporting FORMAT, and a line here.
"""

from translation.anthropic_format import FORMAT as ANTHROPIC
from translation.format import WireFormat
from translation.gemini_format import FORMAT as GEMINI
from translation.openai_format import FORMAT as OPENAI
from translation.responses_format import FORMAT as RESPONSES

FORMATS: dict[str, WireFormat] = {f.name: f for f in (OPENAI, ANTHROPIC, GEMINI, RESPONSES)}
