"""Resonance analysis: a deterministic, explainable tone-pace-intent reading of one message.

Everything here is pure and rule based (lexicons + a few regexes) so that a routing decision
can always be explained by the cues that fired:

* `lexicon`: the matching engine (`normalize`, `Lexicon`, `LexiconSet`), shared with the
  persona catalog's cues; `gated_regex`: literal pre-checks that keep regexes cheap;
* `cue_context`: rules on a cue's surroundings (false friends, negation, mention, hedging);
* `surface_cues`: how a message is written (marks, numbers, code, question form, script);
* `reading_lexicons`: the reading's cue lexicons, data in reading_lexicons.yaml;
* `analysis`: the reading itself, one function per dimension, and the numeric
  `TextFeatures` the router combines with each persona's catalog traits.
"""

from ion.domain.resonance.analysis import FEATURE_NAMES, TextFeatures, analyze, analyze_detailed
from ion.domain.resonance.cue_context import (
    FALSE_FRIENDS,
    HEDGE_FACTOR,
    MENTION_FACTOR,
    contextualize,
    cue_context_factor,
    drop_false_friends,
)
from ion.domain.resonance.gated_regex import GatedRegex, GatedSet
from ion.domain.resonance.lexicon import (
    Hit,
    Lexicon,
    LexiconSet,
    clip,
    normalize,
    spelling_variants,
    suppress_contained,
)

__all__ = [
    "FALSE_FRIENDS",
    "FEATURE_NAMES",
    "HEDGE_FACTOR",
    "MENTION_FACTOR",
    "GatedRegex",
    "GatedSet",
    "Hit",
    "Lexicon",
    "LexiconSet",
    "TextFeatures",
    "analyze",
    "analyze_detailed",
    "clip",
    "contextualize",
    "cue_context_factor",
    "drop_false_friends",
    "normalize",
    "spelling_variants",
    "suppress_contained",
]
