"""Template text for the synthetic conversations: small-talk lines, fact tables, value pools.

`benchmarks/gen_conversations.py` fills these templates. Slots in braces are filled per turn:
`{other}` is the listener, `{n}` a small number, any other name a draw from `POOLS`; in the fact
tables `{a}`/`{b}` are fact values, `{x}` a person and `{me}` the speaker asked about.

    from conversation_templates import POOLS, STATEMENTS
    STATEMENTS[0].format(day="Monday", place="park", adj="lovely")
"""

from __future__ import annotations

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _pool(text: str) -> list[str]:
    """Split a "|"-separated template string, e.g. ``_pool("a|b") == ["a", "b"]``."""
    return [item.strip() for item in text.split("|")]


POOLS = {
    "person": _pool(
        "Maya|Jonas|Priya|Tomasz|Aisha|Felix|Lucia|Omar|Hana|Mateo|Greta|Kwame|Sofia|Ravi|"
        "Ingrid|Diego|Yuki|Amara|Lars|Nadia|Elena|Malik|Chloe|Bruno|Leila|Anders|Rosa|Kenji|"
        "Zara|Pavel|Imani|Henrik|Carmen|Dev|Astrid|Tariq|Noor|Emil|Paloma|Idris|Sven|Mira|"
        "Callum|Beatriz|Femi|Ilse|Rahul|Ines|Viktor|Selin"
    ),
    "city": _pool(
        "Lisbon|Porto|Valencia|Seville|Lyon|Marseille|Bologna|Turin|Naples|Krakow|Gdansk|Prague|"
        "Vienna|Graz|Zurich|Geneva|Munich|Hamburg|Leipzig|Rotterdam|Utrecht|Antwerp|Ghent|"
        "Copenhagen|Aarhus|Oslo|Bergen|Stockholm|Helsinki|Tallinn|Riga|Dublin|Cork|Edinburgh|"
        "Glasgow|Bristol|Montreal|Halifax|Vancouver|Austin|Denver|Kyoto|Osaka|Melbourne|Wellington"
    ),
    "food": _pool(
        "ramen|paella|pho|tacos|falafel|risotto|curry|sushi|shakshuka|pierogi|bibimbap|lasagne|"
        "gnocchi|ceviche|goulash|moussaka|burritos|laksa|tagine|empanadas"
    ),
    "pet": _pool(
        "Biscuit|Pepper|Mochi|Noodle|Ziggy|Waffles|Pickle|Juniper|Clementine|Bramble|Pretzel|"
        "Nugget|Marble|Sprout|Pebble|Churro|Truffle|Maple|Cosmo|Gizmo|Pixel|Barnaby"
    ),
    "baby": _pool("Aurora|Elodie|Maeve|Hazel|Isla|Freya|Ottilie|Wren|Lyra|Nell|Sabine|Thea"),
    "species": _pool("kitten|rabbit|parrot|tortoise|hamster|ferret|guinea pig|cockatiel|gecko"),
    "breed": _pool("beagle|dachshund|corgi|collie|whippet|poodle|labrador|spaniel|greyhound"),
    "job": _pool(
        "pharmacist|paramedic|architect|electrician|veterinarian|midwife|civil engineer|"
        "translator|physiotherapist|sommelier|cartographer|locksmith|air traffic controller"
    ),
    "company": _pool(
        "Brightwell Labs|Northgate Logistics|Halcyon Health|Copperleaf Studio|Meridian Analytics|"
        "Bluefin Robotics|Tidewater Energy|Larkspur Media|Ironbark Capital|Solstice Games"
    ),
    "class": _pool(
        "pottery|salsa|bouldering|life drawing|Italian|woodworking|improv|aerial yoga|fencing|"
        "sign language|watercolour|kickboxing|calligraphy|tango"
    ),
    "instrument": _pool(
        "cello|trumpet|accordion|double bass|saxophone|banjo|harp|clarinet|mandolin|trombone"
    ),
    "day": WEEKDAYS + ["the weekend"],
    "place": _pool("park|market|library|gym|beach|museum|river|station|garden centre|cinema"),
    "adj": _pool("exhausting|lovely|weird|chaotic|relaxing|great|boring|hilarious|intense|calm"),
    "weather": _pool("rainy|sunny|windy|grey|freezing|humid|foggy|mild"),
    "genre": _pool("mystery|sci-fi|fantasy|historical|romance|crime|horror"),
    "topic": _pool("history|economics|space|true crime|language learning|psychology|design"),
    "colour": _pool("green|blue|yellow|white|terracotta|grey"),
    "fruit": _pool("apples|plums|peaches|strawberries|cherries|apricots"),
}
GREETINGS = _pool(
    "Hey {other}! It's been a while. How have you been?|Hi {other}, got a minute? My "
    "{day} was {adj}.|Morning {other}! The weather here is {weather} today.|{other}! Finally "
    "some free time. What's new with you?|Hello again {other}. I hope your week is going "
    "better than mine.|Hey {other}. I just got back from the {place} and needed a break."
)
GREETING_REPLIES = _pool(
    "Hi {other}! All good here, just busy with the usual stuff.|Hey! Nice to hear from you. "
    "It's been a {adj} week, honestly.|Oh hi! I was just thinking about you. I'm fine, "
    "thanks.|Hey {other}, good to hear from you. Things are calm for once."
)
STATEMENTS = _pool(
    "I spent most of {day} at the {place}, which was {adj}.|We tried a new recipe with {food} "
    "last night and it turned out {adj}.|Work has been {adj}; my team lead keeps moving the "
    "deadlines around.|My neighbour {person} keeps telling me to visit {city}, apparently "
    "the {food} there is amazing.|I've been reading a {genre} novel before bed, about {n} "
    "chapters a night.|The weather has been {weather} all week, so I mostly stayed in.|I "
    "watched a documentary about {city} and now I really want to go.|My aunt's {species} got "
    "out again and hid under the stairs for hours.|I finally cleaned out the garage and found "
    "{n} boxes of old stuff.|There's a new place near the {place} that does great {food}.|I'm "
    "trying to walk {n} thousand steps a day; some days it even works.|A friend of mine, "
    "{person}, started {class} lessons and won't stop talking about it.|Someone at work said "
    "being a {job} means terrible hours, not sure I believe it.|I've been listening to a "
    "podcast about {topic} on my commute.|We had {person} over for dinner and cooked {food}, "
    "way too much of it.|The bus was {n} minutes late again and I nearly missed a meeting.|I "
    "keep seeing ads for trips to {city}; the algorithm knows me too well.|My plants are "
    "finally recovering, I think I was overwatering them.|I went to the {place} with {person} "
    "and we talked for hours.|I saw the cutest {species} at the {place} today and almost took "
    "it home.|Honestly I need a holiday, somewhere {weather} and quiet.|I started a puzzle "
    "with {n} hundred pieces and I regret it already.|The new season of that {genre} show is "
    "out, I watched {n} episodes in a row.|My phone screen cracked on {day}, so that was "
    "{adj}.|I've been cooking more at home, mostly {food} and big salads.|I had a long chat "
    "with {person} about living somewhere like {city} one day.|Our street is being repaved, so "
    "it's noisy from {n} in the morning.|I joined a walking group; we meet at the {place} on "
    "{day}.|I tried {class} once years ago and I was terrible at it.|We're thinking about "
    "painting the living room {colour}.|{person} says a {job} in {city} earns twice as much, no "
    "idea if that's true.|I found an old photo album from when we lived near the {place}.|I "
    "can't decide what to get my mum for her birthday, maybe something for the garden.|Traffic "
    "was {adj} this morning; I should really start cycling.|I bought way too many {fruit} at "
    "the market, so I guess I'm making jam.|My brother sent me a video of a {species} playing "
    "the {instrument}, it made my day.|I've been meaning to call {person}, we haven't talked "
    "in {n} weeks.|The {place} was packed on {day}, everybody had the same idea."
)
REACTIONS = _pool(
    "Ha, that sounds {adj}.|Oh no, that's annoying.|That's so nice to hear.|Honestly, same "
    "here.|I know exactly what you mean.|Wow, I didn't expect that.|That's a good idea, "
    "actually.|Haha, classic.|Oof, rough.|Love that for you.|Fair enough."
)
QUESTIONS = _pool(
    "How's your week going so far?|Any plans for the weekend?|Have you been to the {place} "
    "lately?|Do you still cook {food} sometimes?|What are you reading these days?|Did you ever "
    "make it to {city}?|How's work treating you?|Are you watching anything good?|Have you "
    "talked to {person} recently?|What would you do with a free day right now?"
)
NEWS_REPLIES = _pool(
    "Oh wow, thanks for telling me. Keep me posted!|Really? I had no idea. How do you feel "
    "about it?|That's big news. Let me know how it goes.|Huh, I did not see that coming.|Noted, "
    "I'll remember that one.|Oh, interesting. Tell me more next time we talk.|Well, that's a "
    "lot going on. Fingers crossed it all works out."
)
CLOSINGS = _pool(
    "Anyway, I should get going. Talk soon!|I have to run, {other}. Let's catch up again "
    "soon.|Okay, dinner is ready here. Bye for now!|Good chatting, {other}. Take care!"
)
CLOSING_REPLIES = _pool("Bye! Take care.|Talk soon, {other}!|See you, have a good one!")
# Fact tables. Each row is "|"-separated: the pools its slots {a}, {b} draw from (the last
# slot is the answer), the turn(s) that plant it, then paraphrased questions about it.
SINGLE_HOPS = {
    "pet": _pool(
        "species pet|We finally brought home a {a} from the shelter. We named the little one "
        "{b}.|What is the name of {me}'s {a}?|What did {me} call the {a} adopted from the shelter?"
    ),
    "employer": _pool(
        "job company|I accepted an offer at {b}, I'll be a {a} on their new team.|Which "
        "company hired {me}?|Who is {me}'s new employer?"
    ),
    "age": _pool(
        "age|My grandmother turned {a} on Sunday and she still beats all of us at cards.|How "
        "old is {me}'s grandmother?"
    ),
    "books": _pool(
        "books|I've read {a} books so far this year, a personal record.|How many books had "
        "{me} finished this year, by their own count?"
    ),
    "commute": _pool(
        "minutes|My commute is {a} minutes each way now, which is brutal.|How many minutes "
        "does {me} spend commuting in one direction?"
    ),
}
NUMBERS = {"age": (78, 99), "books": (32, 75), "minutes": (35, 95)}  # clear of days of month
CHANGES = {  # the answer is the value after the change: {b}
    "move": _pool(
        "city|Big news: we're moving to {a} next month, the flat is already rented.|So, plot "
        "twist: we left {a} and moved again, this time to {b}. Long story, better rent.|Which "
        "city does {me} live in now?|After all the moving, where has {me} settled?"
    ),
    "class": _pool(
        "class|I signed up for {a} classes on Thursday evenings, wish me luck.|I quit {a}, it "
        "really wasn't for me. I switched to {b} instead and I love it.|What class is {me} "
        "taking these days?"
    ),
    "food": _pool(
        "food|Lately I'm obsessed with {a}, I could eat it every single day.|I'm so over {a} "
        "now. My new obsession is {b}, I make it twice a week.|Which dish is {me} currently "
        "obsessed with?"
    ),
}
CHAINS = {  # person {x} is known by {a} in one turn and has {b} in another
    "friend": _pool(
        "city pet|My old friend {x} just moved to {a} for work.|{x} sent me pictures of the "
        "new puppy, a {breed} called {b}.|What is the puppy called that belongs to {me}'s "
        "friend who moved to {a}?|{me} has a friend who relocated to {a}; what is that "
        "friend's dog named?"
    ),
    "cousin": _pool(
        "job baby|My cousin {x} finally qualified as a {a} after years of training.|{x} and "
        "their partner just had a baby girl, they named her {b}.|What is the name of the baby "
        "of {me}'s cousin who works as a {a}?"
    ),
    "colleague": _pool(
        "city instrument|{x} from work is getting married in {a} next spring.|My colleague {x} "
        "plays the {b} in a band on weekends, and apparently quite well.|Which instrument does "
        "{me}'s colleague who is getting married in {a} play?"
    ),
}
RELATIVE_EVENTS = [  # "event/question"; the turn says when relative to the session date
    row.split("/")
    for row in _pool(
        "ran my first half marathon/When did {me} run a half marathon for the first time?|"
        "passed my driving test/When did {me} get through the driving test?|"
        "got my first tattoo/On what date did {me} get a first tattoo?|"
        "went skydiving for the first time/When did {me} jump out of a plane?|"
        "handed in my thesis/When did {me} submit the thesis?|"
        "sold my old car/When did {me} get rid of the old car?|"
        "gave my first conference talk/When did {me} first present at a conference?|"
        "volunteered at the food bank for the first time/When did {me} first help at the "
        "food bank?|signed the lease for a studio space/When did {me} sign the studio lease?"
    )
]
LITERAL_EVENTS = [  # "turn/question"; the turn gives the date itself
    row.split("/")
    for row in _pool(
        "My sister's wedding is on {date}, you have to come!/When is {me}'s sister getting "
        "married?|My citizenship interview is finally scheduled for {date}./When is {me}'s "
        "citizenship interview?|The knee surgery is booked for {date}, fingers crossed./On "
        "what date is {me}'s knee operation?|We're throwing a housewarming party on {date}./"
        "When is {me}'s housewarming party?|The big job interview is on {date} and I'm "
        "already nervous./When does {me} have the big job interview?|My parents arrive for "
        "their visit on {date}./On what date do {me}'s parents come to visit?"
    )
]
