"""Crisis detection: runs on every learner message, before routing and before any cache.

Three kinds of evidence, combined so that recall comes first (docs/safety.md):

* **signals** (`safety.yaml`): precise phrasings of suicidal ideation, plans, goodbyes and
  self-harm, in Korean and English. A signal is a crisis on its own, unless the message is
  plainly *about* the topic (a friend, a paper, a game): then it counts as a weak signal.
* **weak signals**: goodbyes, giving things away, "I picked a date": a crisis after earlier
  distress in the conversation, or when the embedding model also leans towards crisis.
* **the embedding model**: a small trained head over multilingual sentence embeddings
  (`ion train safety`), for what no phrase list catches. It fires on its own above a
  calibrated threshold, unless the message is everyday language that shares words with
  crisis language (the Korean intensifier 죽겠다, "kill the process", "I'm dead 😂"), and
  at a lower threshold after earlier distress.

Korean verb stems are matched on decomposed (NFD) text, so the stem 뛰어내리 also matches
뛰어내릴까 and 뛰어내려: a Hangul syllable with a final consonant is the open syllable
plus one more jamo.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import yaml

from ion.domain.operating_points import THRESHOLD_NAMES, operating_point_param
from ion.domain.resonance.gated_regex import GatedRegex, GatedSet
from ion.domain.semantic import SemanticLayer
from ion.domain.text import join_short_pieces
from ion.errors import ConfigurationError

__all__ = ["CrisisDetector", "CrisisRules", "SafetyAssessment", "load_rules", "segments"]

#: Defaults when no trained head says otherwise (see `ion train safety`).
DEFAULT_THRESHOLD = 0.5
DEFAULT_CONTEXT_THRESHOLD = 0.3
DEFAULT_WEAK_THRESHOLD = 0.15
DEFAULT_DISTRESS_THRESHOLD = 0.5
#: Above 1: by default a guard (everyday idiom, joke, too short) always holds the model back.
DEFAULT_GUARDED_THRESHOLD = 1.01
#: Earlier learner turns looked at for distress.
CONTEXT_TURNS = 4
#: The model alone never fires on a text shorter than this (non-space characters, a Hangul
#: syllable counting as two): a greeting or an "ok" has no meaning to read, and short
#: crisis statements are phrases the signals know. After earlier distress, short messages
#: count (see `verdict`). A Hangul syllable carries about as much as two Latin letters:
#: "그냥 안 깼으면" (6 syllables) says as much as "just never wake" (13 letters).
MIN_MODEL_CHARS = 12
#: A message longer than this is also read sentence by sentence, and its most worrying
#: sentence counts: one risky sentence inside a long study question is diluted in the
#: embedding of the whole, and the embedder reads only the head and tail of a long text.
#: Cross-writer, 300 beat 120, 200 and never (docs/safety.md).
SEGMENT_ABOVE_CHARS = 300
#: At most this many sentence groups per message (each costs one embedding).
MAX_SEGMENTS = 6
#: Log-odds taken off a sentence group's crisis probability before it can speak for the
#: message (`ion train safety` chooses it cross-writer; none without a trained value). A
#: long vent about layoffs has sentences that read darker alone than in the whole post.
DEFAULT_SEGMENT_DISCOUNT = 0.0
#: Sentence ends: punctuation, ellipses, line breaks, and the laughing/crying runs that end
#: a chat sentence in Korean.
_SENTENCE_END = re.compile(r"(?<=[.!?。…])\s+|\n+|(?<=[ㅋㅎㅠㅜ]{2})\s+")
#: Sentences shorter than this join the next one: "Anyway." carries no meaning alone.
_MIN_SEGMENT_CHARS = 25


def discounted(p: float, discount: float) -> float:
    """`p` with `discount` taken off its log-odds: p / (p + (1 - p) e^discount)."""
    return p / (p + (1.0 - p) * math.exp(discount))


def segments(text: str) -> list[str]:
    """The texts the model reads for one message: the whole, then its sentence groups."""
    if len(text) <= SEGMENT_ABOVE_CHARS:
        return [text]
    sentences = join_short_pieces(_SENTENCE_END.split(text), _MIN_SEGMENT_CHARS)
    if len(sentences) <= 1:
        return [text]
    size = math.ceil(len(sentences) / MAX_SEGMENTS)
    groups = [" ".join(sentences[i : i + size]) for i in range(0, len(sentences), size)]
    return [text, *groups]


@dataclass(frozen=True, slots=True)
class SafetyAssessment:
    """The detector's verdict on one message; `reasons` name rule families, never text."""

    crisis: bool
    score: float
    reasons: tuple[str, ...] = ()

    @property
    def moved_on(self) -> bool:
        """The learner dropped the subject after distress ("never mind. can you …")."""
        return f"weak:{CHANGED_SUBJECT}{AFTER_DISTRESS}" in self.reasons


def _decompose(text: str) -> str:
    return unicodedata.normalize("NFD", unicodedata.normalize("NFC", text))


def _reading_length(text: str) -> int:
    """Non-space characters, a Hangul syllable counting twice (see MIN_MODEL_CHARS)."""
    return sum(2 if "\uac00" <= ch <= "\ud7a3" else 1 for ch in text if not ch.isspace())


# A word spelled around a filter: single syllables joined by dots, stars or digits
# ("유.서", "죽.고.싶.다", "자1살"). Only runs of single syllables are joined, so a
# sentence's full stop ("가자.살려줘") is left alone; signals are looked for in both
# spellings, everything else ("중2 때 … 했었") in the text as written.
_SPLIT_WORD = re.compile(
    r"(?<![\uac00-\ud7a3])[\uac00-\ud7a3](?:[.·*_\d][\uac00-\ud7a3])+(?![\uac00-\ud7a3])"
)
_SEPARATORS = re.compile(r"[.·*_\d]")


#: A quotation: double or curly quotes, corner brackets, or single quotes that are not an
#: apostrophe ("don't", "I'm"); a Korean particle may follow the closing mark ('살기 싫다'는).
_QUOTED = re.compile(
    r'"[^"\n]{1,300}"|\u201c[^\u201d\n]{1,300}\u201d|\u2018[^\u2019\n]{1,300}\u2019'
    r"|\u300c[^\u300d\n]{1,300}\u300d|(?<![A-Za-z0-9])'[^'\n]{1,300}'(?![A-Za-z0-9])"
)


def join_split_words(text: str) -> str:
    """`text` with the words spelled around a filter joined up again."""
    return _SPLIT_WORD.sub(lambda m: _SEPARATORS.sub("", m.group()), text)


#: A run of whitespace: a pattern's `\s*X?\s*` would try every split of a long one.
_SPACE_RUN = re.compile(r"\s+")


def _one_space(run: re.Match[str]) -> str:
    return "\n" if "\n" in run.group() else " "


def _fold(text: str) -> str:
    """The spelling the rules read: case-folded, Hangul decomposed, and each run of
    whitespace one space or one line break."""
    return _decompose(_SPACE_RUN.sub(_one_space, text.casefold()))


#: How many recent texts keep their reading (a few hundred conversations' context).
RECENT_TEXTS = 4096

#: Suffix of a signal demoted because the text talks about the topic rather than the self.
DISCUSSED = " (discussed)"
#: Suffix of a goodbye that gives its ordinary reason (a new job, the course's end).
PLAIN = " (plain farewell)"
#: The reading of a message that drops the subject ("anyway, can you explain closures",
#: "아 됐어요 잊어주세요"): after a crisis message, taking it back is a warning sign, not
#: an all-clear.
CHANGED_SUBJECT = "changed the subject"
#: Suffix of a verdict's reason that counted because of earlier distress.
AFTER_DISTRESS = " after distress"
#: The reading of a reply of a few words that neither reassures nor laughs ("friday", "top
#: one", "잘 있어", "is that bad?"): after distress, it answers the distress.
SHORT_REPLY = "short reply"
#: The reading of a question whether the means suffice or can be had ("이 정도면
#: 충분하겠죠?", "what time does the pharmacy close"): after distress, part of a plan.
MEANS_QUESTION = "asks about the means"
#: At most this many words make a short reply.
SHORT_REPLY_WORDS = 3


def only_after_distress(weak: str | None) -> bool:
    """A weak reading that counts only after earlier distress, never on the model's lean."""
    return weak is not None and (
        weak.endswith((DISCUSSED, PLAIN)) or weak in (CHANGED_SUBJECT, SHORT_REPLY, MEANS_QUESTION)
    )


#: (signal family, weak-signal family, guard family) found in a text, or None each; the
#: guard is "short" for a text too short for the model to read alone.
RuleReading = tuple[str | None, str | None, str | None]


#: The groups of `safety.yaml`'s guards section that are not guards, in reading order.
RULE_GROUPS = (
    "discussion",
    "joking",
    "earnest",
    "owned",
    "farewell",
    "reported",
    "changed_subject",
    "clarified",
    "reassured",
    "means_question",
)


@dataclass(frozen=True)
class CrisisRules:
    signals: tuple[tuple[str, GatedRegex], ...]
    weak_signals: tuple[tuple[str, GatedRegex], ...]
    guards: tuple[tuple[str, GatedRegex], ...]
    discussion: tuple[GatedRegex, ...]
    #: Laughter makes a signal a weak one ("죽고 싶다 ㅋㅋ 교수님이 재시험 없대"), unless
    #: the learner says they mean it ("웃긴 거 아님", "not joking").
    joking: tuple[GatedRegex, ...] = ()
    earnest: tuple[GatedRegex, ...] = ()
    #: The learner says the story or the character is themself ("사실 제 얘기예요"): a
    #: signal is demoted neither by the story it is told in nor by the laugh after it.
    owned: tuple[GatedRegex, ...] = ()
    #: A goodbye with its ordinary reason ("다음 주부터 입사해서", "course ends today, I'll
    #: be back"): its weak reading counts only after earlier distress.
    farewell: tuple[GatedRegex, ...] = ()
    #: Someone else is the speaker ("my brother texted me", "엄마가 … 하세요"): a signal
    #: that stands only inside quotation marks is their words, spoken about.
    reported: tuple[GatedRegex, ...] = ()
    #: The learner drops the subject ("never mind", "암튼"), unless they say what they
    #: meant ("I meant the project", "농담이에요"): a weak reading after distress only.
    changed_subject: tuple[GatedRegex, ...] = ()
    clarified: tuple[GatedRegex, ...] = ()
    #: A short reply that says the learner is all right, thanks, or laughs ("지금은 진짜
    #: 괜찮아요", "sure thanks", "failed lol") is not read as answering the distress.
    reassured: tuple[GatedRegex, ...] = ()
    #: Whether the means suffice, or where and when they can be had: after distress only.
    means_question: tuple[GatedRegex, ...] = ()

    def named(self) -> list[tuple[str, GatedRegex]]:
        """Every rule with where it stands ("signals.ko_explicit", "discussion")."""
        out = [
            (f"{kind}.{family}", gate)
            for kind, rules in (
                ("signals", self.signals),
                ("weak_signals", self.weak_signals),
                ("guards", self.guards),
            )
            for family, gate in rules
        ]
        for kind in RULE_GROUPS:
            out += [(kind, gate) for gate in getattr(self, kind)]
        return out

    @cached_property
    def _sets(self) -> dict[str, GatedSet]:
        """Each group's regexes read together (one scan for the literals they need)."""
        sets = {
            kind: GatedSet([gate for _family, gate in getattr(self, kind)])
            for kind in ("signals", "weak_signals", "guards")
        }
        sets.update({kind: GatedSet(getattr(self, kind)) for kind in RULE_GROUPS})
        return sets

    def _first(self, kind: str, text: str) -> str | None:
        """The family of the first rule of `kind` (signals, weak_signals, guards) that
        matches `text`, in the rules' order."""
        index = self._sets[kind].first(text)
        return None if index is None else str(getattr(self, kind)[index][0])

    def _any(self, kind: str, text: str) -> bool:
        """Whether a rule of the group `kind` matches `text`."""
        return self._sets[kind].first(text) is not None

    def _quotes_someone_else(self, kind: str, spellings: Sequence[str]) -> bool:
        """Every match of the rules of `kind` stands inside quotation marks, and someone
        else is the speaker."""
        if not self._any("reported", spellings[0]):
            return False
        return not any(self._first(kind, _QUOTED.sub(" ", t)) for t in spellings)

    def read(self, text: str) -> RuleReading:
        """(signal family, weak-signal family, guard family) found in `text`, or None each."""
        folded = _fold(text)
        joined = join_split_words(text)
        spellings = (folded,) if joined == text else (folded, _fold(joined))
        signal = next(filter(None, (self._first("signals", t) for t in spellings)), None)
        weak = next(filter(None, (self._first("weak_signals", t) for t in spellings)), None)
        weak_said = weak is not None  # a weak phrasing was found, not a demoted signal
        owned = self._any("owned", folded)
        if (
            signal is not None
            and not owned
            and (self._any("discussion", folded) or self._quotes_someone_else("signals", spellings))
        ):
            signal, weak = None, weak or f"{signal}{DISCUSSED}"
        elif (
            signal is not None
            and not owned
            and self._any("joking", folded)
            and not self._any("earnest", folded)
        ):
            signal, weak = None, weak or f"{signal} (laughing)"
        if (
            signal is None
            and weak_said
            and not owned
            and not only_after_distress(weak)
            and self._quotes_someone_else("weak_signals", spellings)
        ):
            weak = f"{weak}{DISCUSSED}"
        elif (
            signal is None
            and weak is not None
            and not only_after_distress(weak)
            and self._any("farewell", folded)
        ):
            weak = f"{weak}{PLAIN}"
        guard = self._first("guards", folded)
        if signal is None and weak is None:
            weak = self._reply_to_distress(folded, guard)
        if guard is None and _reading_length(text) < MIN_MODEL_CHARS:
            guard = "short"
        return signal, weak, guard

    def _reply_to_distress(self, folded: str, guard: str | None) -> str | None:
        """What a message with no signal of its own says when it follows distress: it asks
        about the means, drops the subject, or answers in a few words; or nothing."""
        # Every message is read so, most without any distress before them: the cheapest
        # tests first, and "what was meant" only for a message that could need it.
        if self._any("means_question", folded):
            return MEANS_QUESTION
        dropped = self._any("changed_subject", folded)
        short = guard is None and 0 < len(folded.split()) <= SHORT_REPLY_WORDS
        if not (dropped or short) or self._any("clarified", folded):
            return None
        if dropped:
            return CHANGED_SUBJECT
        return None if self._any("reassured", folded) else SHORT_REPLY


#: A Hangul syllable under a quantifier ("목을?"): decomposed, the quantifier would apply
#: to its last jamo only, so the syllable is grouped first.
_QUANTIFIED_SYLLABLE = re.compile(r"([\uac00-\ud7a3])(?=[?*+{])")


#: An unbounded run of word or non-space characters (`\S*`, `\w+`), not escaped.
_UNBOUNDED_RUN = re.compile(r"(?<!\\)\\([Sw])([*+])")
#: The longest run such a pattern reads: a decomposed Hangul syllable is two or three
#: characters, so about twenty syllables written without a space. Unbounded, every
#: occurrence of a pattern's first word in a long unspaced message would be read to its
#: end, and one 4,000-character message would cost seconds (bench/crisis_rules_bench.py).
LONGEST_RUN = 60


def _bounded(run: re.Match[str]) -> str:
    return f"\\{run.group(1)}{{{0 if run.group(2) == '*' else 1},{LONGEST_RUN}}}"


def _decompose_pattern(source: str) -> str:
    """A rule as compiled: runs bounded, Hangul decomposed like the text it reads."""
    source = _UNBOUNDED_RUN.sub(_bounded, source)
    return _decompose(_QUANTIFIED_SYLLABLE.sub(r"(?:\1)", source))


def _compile(groups: object, where: str) -> tuple[tuple[str, GatedRegex], ...]:
    if not isinstance(groups, dict):
        raise ConfigurationError(f"safety rules: '{where}' must map family names to lists")
    out = []
    for family, patterns in groups.items():
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ConfigurationError(f"safety rules: {where}.{family} must be a list of regexes")
        for source in patterns:
            try:
                # Only decomposed, never case-folded: folding would turn \S into \s.
                compiled = re.compile(_decompose_pattern(source), re.IGNORECASE)
                # The rules read case-folded text (`_fold`): a pattern runs only when the
                # literals it needs are there.
                out.append((str(family), GatedRegex(compiled, text_case_folded=True)))
            except re.error as exc:
                raise ConfigurationError(f"safety rules: {where}.{family}: {exc}") from exc
    return tuple(out)


def default_rules_path() -> Path:
    return Path(__file__).with_name("safety.yaml")


@lru_cache(maxsize=4)
def load_rules(path: Path | None = None) -> CrisisRules:
    source = path or default_rules_path()
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read safety rules {source}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"safety rules {source}: expected a mapping")
    guards = dict(data.get("guards", {}))
    # Groups of the guards section that are not guards: each is read on its own.
    groups = {
        name: tuple(p for _, p in _compile({name: guards.pop(name, [])}, "guards"))
        for name in RULE_GROUPS
    }
    return CrisisRules(
        signals=_compile(data.get("signals", {}), "signals"),
        weak_signals=_compile(data.get("weak_signals", {}), "weak_signals"),
        guards=_compile(guards, "guards"),
        **groups,
    )


class CrisisDetector:
    """Rules + (optionally) the trained embedding head + conversation context."""

    def __init__(
        self,
        rules: CrisisRules,
        semantic: SemanticLayer | None = None,
        *,
        thresholds: tuple[float, float, float, float, float] | None = None,
        operating_point: float | None = None,
    ) -> None:
        self._rules = rules
        self._semantic = semantic
        # A conversation's earlier messages are read again on every turn: each text's
        # rule reading and model probability are kept for the texts seen lately.
        self._read = lru_cache(maxsize=RECENT_TEXTS)(rules.read)
        self._recent: OrderedDict[str, float] = OrderedDict()
        self._recent_lock = threading.Lock()
        if semantic is not None and "crisis" not in semantic.labels:
            raise ValueError("the safety head has no 'crisis' label")
        head = semantic.param if semantic is not None else (lambda _n, d: d)
        param = head
        if semantic is not None and operating_point is not None:
            param = self._operating_point(semantic, operating_point)
        self.threshold = param("threshold", DEFAULT_THRESHOLD)
        self.context_threshold = param("context_threshold", DEFAULT_CONTEXT_THRESHOLD)
        self.weak_threshold = param("weak_threshold", DEFAULT_WEAK_THRESHOLD)
        # An earlier message this likely a crisis makes the conversation one of distress.
        self.distress_threshold = param("distress_threshold", DEFAULT_DISTRESS_THRESHOLD)
        # A model this sure fires through a guard: "긴팔 입고 다님 ㅋㅋ 웃긴 거 아님" laughs.
        self.guarded_threshold = param("guarded_threshold", DEFAULT_GUARDED_THRESHOLD)
        # Chosen once with the reader, not per operating point.
        self.segment_discount = head("segment_discount", DEFAULT_SEGMENT_DISCOUNT)
        if thresholds is not None:  # calibration tries candidates on out-of-fold scores
            (
                self.threshold,
                self.context_threshold,
                self.weak_threshold,
                self.distress_threshold,
                self.guarded_threshold,
            ) = thresholds

    @staticmethod
    def _operating_point(semantic: SemanticLayer, point: float) -> Callable[[str, float], float]:
        missing = [
            name
            for name in THRESHOLD_NAMES
            if operating_point_param(point, name) not in semantic.artifact.params
        ]
        if missing:
            raise ConfigurationError(
                f"the safety head has no thresholds for the operating point {point:g}"
                " (everyday false alarms): run `ion train safety`"
            )
        return lambda name, default: semantic.param(operating_point_param(point, name), default)

    @property
    def rules(self) -> CrisisRules:
        return self._rules

    @property
    def uses_model(self) -> bool:
        return self._semantic is not None

    def model_texts(self, message: str) -> list[str]:
        """The texts the model will read to assess `message` (the whole, then a long
        message's sentence groups); none without the model or when it was read lately."""
        if self._semantic is None:
            return []
        with self._recent_lock:
            if message in self._recent:
                return []
        return segments(message)

    def _probabilities(self, texts: Sequence[str]) -> list[float]:
        if self._semantic is None:
            return [0.0] * len(texts)
        with self._recent_lock:
            known = {t: self._recent[t] for t in texts if t in self._recent}
        fresh = list(dict.fromkeys(t for t in texts if t not in known))
        if fresh:
            known.update(zip(fresh, self._read_model(fresh), strict=True))
            with self._recent_lock:
                for text in fresh:
                    self._recent[text] = known[text]
                while len(self._recent) > RECENT_TEXTS:
                    self._recent.popitem(last=False)
        return [known[t] for t in texts]

    def _read_model(self, texts: Sequence[str]) -> list[float]:
        if self._semantic is None:
            return [0.0] * len(texts)
        parts = [segments(text) for text in texts]
        flat = [segment for group in parts for segment in group]
        crisis = [math.exp(row["crisis"]) for row in self._semantic.log_proba(flat)]
        out, start = [], 0
        for group in parts:
            whole, *groups = crisis[start : start + len(group)]
            out.append(max([whole, *(discounted(p, self.segment_discount) for p in groups)]))
            start += len(group)
        return out

    def assess(self, message: str, history: Sequence[str] = ()) -> SafetyAssessment:
        """Assess `message`, given the learner's earlier messages (oldest first)."""
        earlier = [t for t in history if t.strip()][-CONTEXT_TURNS:]
        probabilities = self._probabilities([*earlier, message])
        return self.decide(message, earlier, probabilities)

    def decide(
        self, message: str, earlier: Sequence[str], probabilities: Sequence[float]
    ) -> SafetyAssessment:
        """The verdict from the rules and given model probabilities (earlier..., message)."""
        return self.verdict(self._read(message), [self._read(t) for t in earlier], probabilities)

    def verdict(
        self,
        message: RuleReading,
        earlier: Sequence[RuleReading],
        probabilities: Sequence[float],
    ) -> SafetyAssessment:
        """The verdict from rule readings and model probabilities (earlier..., message)."""
        p = probabilities[-1]
        distress = any(
            signal is not None or (guard is None and prob >= self.distress_threshold)
            for (signal, _weak, guard), prob in zip(earlier, probabilities, strict=False)
        )
        signal, weak, guard = message
        reasons: list[str] = []
        if signal is not None:
            reasons.append(f"signal:{signal}")
        # A signal spoken about (a friend, a film, "not suicidal") and a plain farewell count
        # only after distress.
        leaning = p >= self.weak_threshold and not only_after_distress(weak)
        if weak is not None and (distress or leaning):
            reasons.append(f"weak:{weak}" + (AFTER_DISTRESS if distress else ""))
        # Too short to read ("again", "one more"): the model alone never fires, however sure.
        if guard is None:
            alone = self.threshold
        else:
            alone = math.inf if guard == "short" else self.guarded_threshold
        if p >= alone:
            reasons.append("model")
        if distress and p >= self.context_threshold:
            reasons.append(f"model{AFTER_DISTRESS}")
        score = 1.0 if signal is not None else p
        return SafetyAssessment(crisis=bool(reasons), score=round(score, 4), reasons=tuple(reasons))
