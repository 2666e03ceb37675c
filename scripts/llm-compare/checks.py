"""Questions and fixed pass/fail checks for the quality comparison.

Written down BEFORE any model was run (see README). Each check is a list of groups; an
answer passes when, for every group, at least one of the group's regexes matches
(case-insensitive). `forbid` regexes must not match. The checks are deliberately lenient
on wording and strict on the one fact or action that makes the answer useful.
"""

QUESTIONS = [
    # id, question, required groups, forbidden
    ("capital", "What is the capital of France?", [[r"\bparis\b"]], []),
    ("book", "Can you recommend a good book for a long flight?",
     # names a specific book: an author credit ("by Someone") or a quoted/known title
     [[r"\bby [A-Z][a-z]+", r"[\"'\u201c\u2018][A-Z][^\"'\u201d\u2019]{2,}[\"'\u201d\u2019]"]], []),
    ("egg", "How do I boil an egg?",
     [[r"\bwater\b"], [r"\bboil"], [r"\bminutes?\b", r"\bmins?\b"]], []),
    ("london", "What's the weather usually like in London in November?",
     [[r"\brain", r"\bwet\b", r"\bdrizzl", r"\bdamp\b", r"\bshowers?\b"],
      [r"\bcold\b", r"\bcool\b", r"\bchilly\b", r"\bmild\b", r"\b\d+ ?(degrees|°)"]], []),
    ("octopus", "Tell me a fun fact about octopuses.",
     [[r"three hearts", r"\bhearts?\b", r"blue blood", r"\bblood\b", r"\barms?\b",
       r"tentacle", r"\bink\b", r"camouflag", r"colou?r", r"\bbrains?\b", r"neuron",
       r"\bskin\b", r"intelligen", r"escape"]], []),
    ("cancel", "I need to cancel my appointment tomorrow, what should I do?",
     [[r"\bcall\b", r"\bcontact\b", r"\bphone\b", r"\breach out\b", r"\bemail\b",
       r"\bwebsite\b", r"\bonline\b", r"\bapp\b", r"\bportal\b", r"\bnotify\b", r"\blet (them|the)\b"]], []),
    # four of our own, spoken-style
    ("minutes", "How many minutes are there in two hours?", [[r"\b120\b", r"hundred (and )?twenty"]], []),
    ("shakespeare", "Who wrote Romeo and Juliet?", [[r"shakespeare"]], []),
    ("timezone", "What time zone is New York in?",
     [[r"\beastern\b", r"\bEST\b", r"\bEDT\b", r"\bET\b", r"(UTC|GMT) ?[-\u2212]\s?(5|4)"]], []),
    ("veggie", "What's a quick vegetarian dinner I could make tonight?",
     [[r"pasta", r"stir[- ]?fr", r"salad", r"curry", r"omelet", r"soup", r"\brice\b", r"beans?",
       r"tofu", r"vegetable", r"veggie", r"lentil", r"chickpea", r"risotto", r"taco",
       r"quesadilla", r"frittata", r"noodle", r"pizza", r"sandwich", r"egg"]],
     [r"chicken", r"beef", r"pork", r"\bfish\b", r"bacon", r"\bham\b", r"\bmeat\b", r"salmon",
      r"tuna", r"shrimp", r"sausage"]),
]

# Two-turn conversation: the second turn only makes sense with the first.
FOLLOW_UP = ("What is the capital of France?", "And of Germany?", [[r"\bberlin\b"]], [])

# Style check derived from the system prompt: one to three short sentences, plain text,
# no lists, markdown or emoji. Applied to every answer; reported as a separate column.
STYLE_FORBID = [r"^\s*[-*\u2022]\s", r"^\s*\d+[.)]\s", r"\*\*", r"^#", r"[\U0001F300-\U0001FAFF\u2600-\u27BF]"]
MAX_SENTENCES = 3
