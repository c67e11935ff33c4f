"""English sentences for the synthetic corpus: hand-written and generated.

About one sentence in four is hand-written (``SENTENCES``); the others
combine word lists (subject, verb, object, place, time, an optional opener
and a statement / question / exclamation form): several million distinct
sentences (``make_sentence``).
"""

# Hand-written sentences, used for about one utterance in four.
SENTENCES = (
    "The old lighthouse keeper walked along the shore before sunrise.",
    "Please remember to close the window when the rain starts again.",
    "A bright orange kite drifted slowly above the crowded park.",
    "We found an old map hidden behind the books in the attic.",
    "The train to the northern coast leaves at half past seven.",
    "Could you tell me where the nearest post office is?",
    "Fresh bread and warm soup were waiting on the kitchen table.",
    "The committee will publish its final report next Thursday.",
    "Three small boats were tied together at the end of the pier.",
    "Nobody expected the quiet student to win the chess tournament.",
    "The museum opens its new exhibition on ancient pottery today.",
    "Heavy snow closed the mountain road for most of the week.",
    "She carefully painted the fence a pale shade of green.",
    "Why did the engineers decide to rebuild the bridge in steel?",
    "Every morning the baker lights the oven before five o'clock.",
    "The orchestra tuned their instruments while the audience waited.",
    "A sudden gust of wind scattered the papers across the floor.",
    "My grandfather still repairs clocks in his tiny workshop.",
    "The children built a sandcastle with towers and a deep moat.",
    "Turn left at the church and follow the river for a mile.",
    "The scientist recorded the temperature every hour for a month.",
    "Our neighbours are planting apple trees along the garden wall.",
    "The library stays open late on weekdays during the exams.",
    "A family of ducks crossed the road in front of the bus.",
    "The detective noticed a muddy footprint near the back door.",
    "We should leave early if we want to avoid the traffic.",
    "The farmer sold honey, eggs and cheese at the Saturday market.",
    "Light from the street lamps reflected on the wet pavement.",
    "Have you ever seen the northern lights over the frozen lake?",
    "The pilot announced that we would land twenty minutes early.",
    "Several volunteers cleaned the beach after the summer festival.",
    "The recipe asks for two cups of flour and a pinch of salt.",
    "An owl was calling softly from the top of the old oak tree.",
    "The new software update fixed most of the problems we reported.",
    "He forgot his umbrella on the bus for the third time this month.",
    "The hikers reached the summit just before the clouds rolled in.",
    "The teacher asked everyone to read the first chapter by Monday.",
    "A narrow staircase led down to a cold and silent cellar.",
    "They celebrated the anniversary with a picnic by the waterfall.",
    "The price of coffee has risen sharply over the last year.",
    "Can you hear the bells ringing from the valley below?",
    "The carpenter measured the door twice before cutting the wood.",
    "Our flight was delayed because of fog at the airport.",
    "The young violinist practised the same passage for hours.",
    "Strong coffee and a good book make a perfect rainy afternoon.",
    "The gardener trimmed the hedges into the shape of animals.",
    "A long line of cars waited at the border crossing.",
    "The mayor promised to repair the roads before the winter.",
    "Nobody could explain the strange noise coming from the engine.",
    "The students measured the height of the tower with a shadow.",
)

_SUBJECTS = (
    "the old fisherman", "my younger sister", "a tired doctor",
    "the new manager", "our neighbour", "the quiet librarian",
    "a curious child", "the city council", "the football coach",
    "an elderly painter", "the head chef", "a young journalist",
    "the school principal", "my best friend", "the night guard",
    "a travelling musician", "the village baker", "the local farmer",
    "a famous architect", "the science teacher", "the taxi driver",
    "a nervous student", "the museum curator", "the ship captain",
    "my uncle", "the hotel receptionist", "a retired pilot",
    "the gardener", "the film director", "a patient nurse",
    "the bus driver", "our lawyer", "the mountain guide",
    "a clever engineer", "the shop owner", "the radio host",
    "my grandmother", "the postman", "a street vendor", "the mechanic",
)  # fmt: skip

_VERBS = (
    "quietly repaired", "carefully examined", "proudly presented",
    "suddenly dropped", "slowly painted", "happily described",
    "eventually found", "quickly packed", "nervously opened",
    "patiently explained", "secretly borrowed", "gently cleaned",
    "finally delivered", "bravely carried", "loudly praised",
    "calmly inspected", "politely returned", "eagerly collected",
    "rarely mentioned", "hastily wrapped", "cheerfully shared",
    "firmly closed", "barely noticed", "boldly questioned",
    "thoroughly tested", "gladly accepted", "cleverly rebuilt",
    "casually ignored", "neatly folded", "warmly welcomed",
)  # fmt: skip

_OBJECTS = (
    "a wooden chair", "the broken radio", "an ancient coin",
    "the silver bicycle", "a basket of ripe plums", "the heavy suitcase",
    "a letter from abroad", "the blue umbrella", "a jar of honey",
    "the kitchen clock", "a pair of leather boots", "the garden gate",
    "a stack of old newspapers", "the family photograph",
    "a bright yellow scarf", "the village map", "a bag of potatoes",
    "the antique mirror", "a box of matches", "the rusty lantern",
    "a loaf of warm bread", "the small piano", "a bunch of tulips",
    "the stolen painting", "a cup of green tea", "the spare key",
    "a model sailing ship", "the winter coat", "a notebook full of poems",
    "the fishing net", "a crate of oranges", "the golden trophy",
    "a roll of blue ribbon", "the wooden ladder", "a jar of buttons",
)  # fmt: skip

_PLACES = (
    "near the harbour", "in the crowded station", "behind the town hall",
    "at the edge of the forest", "on the top floor", "beside the river",
    "in the busy market", "outside the bakery", "under the old bridge",
    "at the back of the church", "in the school yard",
    "on the northern hill", "inside the empty barn", "along the canal",
    "next to the fountain", "in the hospital garden", "at the airport",
    "on the narrow balcony", "by the stone wall", "in the dusty attic",
)  # fmt: skip

_TIMES = (
    "early this morning", "late last night", "before the storm began",
    "after the long meeting", "during the summer holidays",
    "on a cold Tuesday", "just before lunch", "while everyone was asleep",
    "at the end of the week", "in the middle of the afternoon",
    "two days ago", "as the sun went down", "right after breakfast",
    "on the first day of spring", "once the guests had left",
)  # fmt: skip

_OPENERS = (
    "", "", "", "", "", "Apparently, ", "Last year, ", "To our surprise, ",
    "As expected, ", "Believe it or not, ", "Once again, ", "Sadly, ",
)  # fmt: skip


def make_sentence(rng):
    """Draws one English sentence, hand-written or combinatorial.

    About one sentence in four comes from ``SENTENCES``; the others combine
    word lists (subject, verb, object, place, time, an optional opener and a
    statement / question / exclamation form), which gives several million
    distinct sentences.

    Arguments
    ---------
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    str
        The sentence.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> s = make_sentence(rng)
    >>> s[0].isupper() and s[-1] in ".?!"
    True
    """

    def pick(options):
        return options[int(rng.integers(len(options)))]

    if rng.random() < 0.25:
        return pick(SENTENCES)
    subject, verb, obj = pick(_SUBJECTS), pick(_VERBS), pick(_OBJECTS)
    place, when = pick(_PLACES), pick(_TIMES)
    form = rng.random()
    if form < 0.15:
        text = f"Did you know that {subject} {verb} {obj} {place} {when}?"
    elif form < 0.25:
        text = f"I cannot believe {subject} {verb} {obj} {when}!"
    elif rng.random() < 0.5:
        text = f"{pick(_OPENERS)}{subject} {verb} {obj} {place} {when}."
    else:
        text = f"{pick(_OPENERS)}{when}, {subject} {verb} {obj} {place}."
    return text[0].upper() + text[1:]
