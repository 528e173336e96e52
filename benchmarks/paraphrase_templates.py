"""Hand-written query intents for the semantic cache benchmark (see gen_paraphrase_pairs.py).

Each intent has several wordings of one question (``forms``; ``{x}`` is a slot), the values its
slot takes and what kind of token they are (an entity, a number or a date), and contrasts: pairs
of queries that look alike but ask something else, each with its kind (negation, antonym,
topic_shift). Wordings vary the way people do: stop words, inflection, order, synonyms and
restructured sentences, so the paraphrase recall measured on them is honest.
"""

from __future__ import annotations

INTENTS: list[dict] = [
    # ------------------------------------------------------------------ support
    {"domain": "support", "slot": None, "forms": [
        "How do I reset my password?", "how can i reset my password", "Can you tell me how to "
        "reset my password?", "What are the steps to reset my password?", "I forgot my password, "
        "how do I reset it?", "password reset: how do I do it?", "How to reset my password",
        "Resetting my password, how does it work?"],
     "contrasts": [
        ("negation", "I received the password reset email", "I never received the password "
         "reset email"),
        ("negation", "The password reset link works", "The password reset link does not work"),
        ("antonym", "How do I enable two-factor authentication?", "How do I disable two-factor "
         "authentication?"),
        ("topic_shift", "How do I reset my password?", "How do I reset my router?"),
        ("topic_shift", "how can i reset my password", "how can i reset my username")]},
    {"domain": "support", "slot": ("entity", ["iPhone", "Android", "Windows", "macOS", "Linux"]),
     "forms": [
        "How do I install the app on {x}?", "how to install the app on {x}", "Installing the app "
        "on {x}: what are the steps?", "Can I install the app on {x}?", "What do I need to do to "
        "install the app on {x}?", "Is there a way to get the app installed on {x}?"],
     "contrasts": [
        ("antonym", "How do I install the app on Windows?", "How do I uninstall the app on "
         "Windows?"),
        ("negation", "The app installs on Android", "The app never installs on Android"),
        ("topic_shift", "How do I install the app on macOS?", "How do I update the app on "
         "macOS?")]},
    {"domain": "support", "slot": ("number", ["14", "30", "60", "90"]), "forms": [
        "Can I return an item after {x} days?", "can i return an item after {x} days", "Is it "
        "possible to return an item after {x} days?", "Returning an item after {x} days, is that "
        "allowed?", "Will you accept a return after {x} days?", "Do you take returns after {x} "
        "days?"],
     "contrasts": [
        ("negation", "Can I return an item that was opened?", "Can I return an item that was "
         "not opened?"),
        ("antonym", "Can I return an item after 30 days?", "Can I return an item before 30 "
         "days?"),
        ("topic_shift", "Can I return an item after 30 days?", "Can I exchange an item after "
         "30 days?")]},
    {"domain": "support", "slot": None, "forms": [
        "My order hasn't arrived yet", "my order has not arrived yet", "My order still has not "
        "arrived", "Why hasn't my order arrived yet?", "order hasn't arrived yet, what now?",
        "I'm still waiting for my order to arrive"],
     "contrasts": [
        ("negation", "My order has arrived", "My order has not arrived"),
        ("antonym", "My order arrived early", "My order arrived late"),
        ("topic_shift", "My order hasn't arrived yet", "My refund hasn't arrived yet"),
        ("antonym", "How do I increase my order limit?", "How do I decrease my order limit?")]},
    {"domain": "support", "slot": ("entity", ["PayPal", "Visa", "Apple Pay", "Klarna",
                                              "Mastercard"]), "forms": [
        "Do you accept {x}?", "do you accept {x} payments", "Can I pay with {x}?", "Is {x} "
        "accepted?", "Is it possible to pay using {x}?", "Can I use {x} to pay?"],
     "contrasts": [
        ("negation", "Do you accept cash on delivery?", "Do you not accept cash on delivery?"),
        ("antonym", "Is shipping cheaper with express delivery?", "Is shipping dearer with "
         "express delivery?"),
        ("topic_shift", "Can I pay with PayPal?", "Can I get a refund to PayPal?")]},
    {"domain": "support", "slot": None, "forms": [
        "How do I cancel my subscription?", "how can I cancel my subscription", "What is the way "
        "to cancel my subscription?", "Cancel my subscription - how?", "I want to cancel my "
        "subscription", "How do I cancel the subscription on my account?", "Steps to cancel "
        "a subscription"],
     "contrasts": [
        ("antonym", "How do I upgrade my subscription?", "How do I downgrade my subscription?"),
        ("negation", "Will I be charged after I cancel?", "Will I not be charged after I "
         "cancel?"),
        ("topic_shift", "How do I cancel my subscription?", "How do I pause my subscription?"),
        ("antonym", "How do I turn on automatic renewal?", "How do I turn off automatic "
         "renewal?")]},
    {"domain": "support", "slot": ("date", ["Monday", "Friday", "Sunday", "Saturday"]), "forms": [
        "Is customer support open on {x}?", "is customer support open on {x}", "Can I reach "
        "customer support on {x}?", "Does customer support work on {x}?", "Customer support "
        "hours on {x}?", "Are your support agents available on {x}?"],
     "contrasts": [
        ("antonym", "When does customer support open?", "When does customer support close?"),
        ("negation", "Is live chat available for all customers?", "Is live chat available for "
         "no customers?"),
        ("topic_shift", "Is customer support open on Sunday?", "Is the warehouse open on "
         "Sunday?")]},
    # ------------------------------------------------------------------ science
    {"domain": "science", "slot": ("number", ["1,000", "2,000", "3,000", "5,000"]), "forms": [
        "What is the boiling point of water at {x} meters?", "what's the boiling point of water "
        "at {x} meters", "At {x} meters, what is the boiling point of water?", "Boiling point of "
        "water at {x} meters", "At what temperature does water boil at {x} meters?", "How hot "
        "must water be to boil at {x} meters?"],
     "contrasts": [
        ("antonym", "What is the boiling point of water?", "What is the freezing point of "
         "water?"),
        ("negation", "Does salt raise the boiling point of water?", "Does salt not raise the "
         "boiling point of water?"),
        ("topic_shift", "What is the boiling point of water?", "What is the boiling point of "
         "ethanol?")]},
    {"domain": "science", "slot": ("entity", ["Mars", "Venus", "Jupiter", "Saturn", "Mercury"]),
     "forms": [
        "How long is a day on {x}?", "how long is a day on {x}", "What is the length of a day on "
        "{x}?", "How many hours does a day on {x} last?", "On {x}, how long does a day last?",
        "Length of one day on {x}"],
     "contrasts": [
        ("antonym", "Which planet is the hottest?", "Which planet is the coldest?"),
        ("antonym", "Which planet is closest to the sun?", "Which planet is farthest from the "
         "sun?"),
        ("topic_shift", "How long is a day on Mars?", "How long is a year on Mars?"),
        ("negation", "Does Mars have a magnetic field?", "Does Mars have no magnetic field?")]},
    {"domain": "science", "slot": None, "forms": [
        "Why is the sky blue?", "why is the sky blue", "What makes the sky blue?", "Why does the "
        "sky look blue?", "How come the sky is blue?", "Explain why the sky is blue",
        "The sky is blue, why?"],
     "contrasts": [
        ("topic_shift", "Why is the sky blue?", "Why is the sea blue?"),
        ("topic_shift", "Why is the sky blue?", "Why is the sky red at sunset?"),
        ("negation", "Is the sky blue on Mars?", "Is the sky not blue on Mars?")]},
    {"domain": "science", "slot": None, "forms": [
        "How does photosynthesis work?", "how does photosynthesis work", "What is the process "
        "of photosynthesis?", "Explain how photosynthesis works", "How do plants carry out "
        "photosynthesis?", "photosynthesis: how does it work?", "Can you explain photosynthesis?"],
     "contrasts": [
        ("antonym", "Does photosynthesis absorb carbon dioxide?", "Does photosynthesis release "
         "carbon dioxide?"),
        ("negation", "Can photosynthesis happen with light?", "Can photosynthesis happen "
         "without light?"),
        ("topic_shift", "How does photosynthesis work?", "How does respiration work?"),
        ("antonym", "Why do leaves absorb red light?", "Why do leaves reflect red light?")]},
    {"domain": "science", "slot": ("entity", ["carbon", "iron", "oxygen", "sodium", "gold"]),
     "forms": [
        "What is the atomic number of {x}?", "what's the atomic number of {x}", "Atomic number "
        "of {x}?", "{x}: what is its atomic number?", "Tell me the atomic number of {x}",
        "How many protons does {x} have?"],
     "contrasts": [
        ("topic_shift", "What is the atomic number of carbon?", "What is the atomic mass of "
         "carbon?"),
        ("antonym", "Is sodium more reactive than potassium?", "Is sodium less reactive than "
         "potassium?"),
        ("negation", "Does gold react with oxygen?", "Does gold never react with oxygen?")]},
    {"domain": "science", "slot": None, "forms": [
        "How fast does light travel?", "how fast does light travel", "What is the speed of "
        "light?", "How fast is light?", "Speed of light in a vacuum?", "At what speed does "
        "light travel?"],
     "contrasts": [
        ("topic_shift", "How fast does light travel?", "How fast does sound travel?"),
        ("antonym", "Does light travel faster in water?", "Does light travel slower in water?"),
        ("negation", "Can anything travel faster than light?", "Can nothing travel faster "
         "than light?")]},
    # ------------------------------------------------------------------ code
    {"domain": "code", "slot": ("entity", ["Python", "JavaScript", "Go", "Rust", "Java"]),
     "forms": [
        "How do I sort a list in {x}?", "how to sort a list in {x}", "Sorting a list in {x}",
        "What is the best way to sort a list in {x}?", "In {x}, how do I sort a list?", "{x} "
        "sort a list", "How can I sort a list using {x}?"],
     "contrasts": [
        ("antonym", "How do I sort a list in ascending order?", "How do I sort a list in "
         "descending order?"),
        ("negation", "How do I sort a list in place?", "How do I sort a list not in place?"),
        ("topic_shift", "How do I sort a list in Python?", "How do I reverse a list in "
         "Python?"),
        ("topic_shift", "how to sort a list in Go", "how to shuffle a list in Go")]},
    {"domain": "code", "slot": ("number", ["2", "3", "10", "16"]), "forms": [
        "How do I round a float to {x} decimal places in Python?", "how to round a float to {x} "
        "decimal places in Python", "Rounding a float to {x} decimal places in Python",
        "In Python, how can I round a float to {x} decimal places?", "Python: round a float to "
        "{x} decimal places", "Round a float to {x} decimal places with Python"],
     "contrasts": [
        ("antonym", "How do I round a number up in Python?", "How do I round a number down in "
         "Python?"),
        ("topic_shift", "How do I round a float in Python?", "How do I format a float in "
         "Python?"),
        ("negation", "Does round() return an int?", "Does round() not return an int?")]},
    {"domain": "code", "slot": None, "forms": [
        "What is the difference between a list and a tuple in Python?", "difference between "
        "a list and a tuple in Python", "Python: difference between a list and a tuple?",
        "How does a list differ from a tuple in Python?", "list vs tuple in Python", "What are "
        "the differences between lists and tuples in Python?"],
     "contrasts": [
        ("negation", "Are tuples mutable in Python?", "Are tuples not mutable in Python?"),
        ("antonym", "Are lists mutable in Python?", "Are lists immutable in Python?"),
        ("topic_shift", "What is the difference between a list and a tuple in Python?", "What "
         "is the difference between a list and a set in Python?")]},
    {"domain": "code", "slot": None, "forms": [
        "How do I undo the last git commit?", "how to undo the last git commit", "Undo the last "
        "commit in git", "How can I undo my last git commit?", "What is the command to undo the "
        "last commit in git?", "git: undo last commit", "Reverting the last git commit"],
     "contrasts": [
        ("negation", "How do I undo the last git commit and keep the changes?", "How do I undo "
         "the last git commit without keeping the changes?"),
        ("topic_shift", "How do I undo the last git commit?", "How do I undo the last git "
         "push?"),
        ("antonym", "How do I merge a branch in git?", "How do I split a branch in git?"),
        ("antonym", "How do I add a file to the git index?", "How do I remove a file from the "
         "git index?")]},
    {"domain": "code", "slot": ("entity", ["TypeError", "KeyError", "ValueError", "IndexError",
                                           "ImportError"]), "forms": [
        "What does {x} mean in Python?", "what does {x} mean in python", "Python {x}: what does "
        "it mean?", "What causes a {x} in Python?", "Why do I get a {x} in Python?", "Meaning of "
        "{x} in Python"],
     "contrasts": [
        ("negation", "Why is the exception caught?", "Why is the exception not caught?"),
        ("topic_shift", "What does KeyError mean in Python?", "How do I raise a KeyError in "
         "Python?"),
        ("antonym", "How do I catch an exception in Python?", "How do I throw an exception in "
         "Python?")]},
    {"domain": "code", "slot": ("number", ["3.8", "3.10", "3.11", "3.12"]), "forms": [
        "Does pandas support Python {x}?", "does pandas support python {x}", "Is Python {x} "
        "supported by pandas?", "Can I use pandas with Python {x}?", "pandas on Python {x}, is "
        "it supported?", "Will pandas work on Python {x}?"],
     "contrasts": [
        ("negation", "Does pandas require numpy?", "Does pandas not require numpy?"),
        ("antonym", "Is pandas faster than polars?", "Is pandas slower than polars?"),
        ("topic_shift", "Does pandas support Python 3.12?", "Does numpy support Python 3.12?")]},
    {"domain": "code", "slot": None, "forms": [
        "How do I read a file line by line in Python?", "how to read a file line by line in "
        "python", "Reading a file line by line in Python", "Python: read a file line by line",
        "In Python, how can I read a file one line at a time?", "What is the way to read a file "
        "line by line in Python?"],
     "contrasts": [
        ("antonym", "How do I read a file in Python?", "How do I write a file in Python?"),
        ("negation", "How do I read a file with the newline characters?", "How do I read a file "
         "without the newline characters?"),
        ("topic_shift", "How do I read a file line by line in Python?", "How do I read a CSV "
         "file line by line in Python?")]},
    # ------------------------------------------------------------------ travel
    {"domain": "travel", "slot": ("entity", ["Paris", "Rome", "Tokyo", "Lisbon", "Barcelona",
                                             "Prague"]), "forms": [
        "What are the best things to do in {x}?", "best things to do in {x}", "What should I do "
        "in {x}?", "Top things to do in {x}", "Things to do in {x}?", "What is there to do in "
        "{x}?", "In {x}, what are the best things to do?"],
     "contrasts": [
        ("negation", "What are the best things to do in Paris with kids?", "What are the best "
         "things to do in Paris without kids?"),
        ("antonym", "What are the most expensive things to do in Rome?", "What are the cheapest "
         "things to do in Rome?"),
        ("topic_shift", "What are the best things to do in Tokyo?", "What are the best things "
         "to eat in Tokyo?")]},
    {"domain": "travel", "slot": ("date", ["January", "April", "July", "October", "December"]),
     "forms": [
        "What is the weather like in Lisbon in {x}?", "what's the weather like in Lisbon in "
        "{x}", "Lisbon weather in {x}", "How is the weather in Lisbon in {x}?", "In {x}, what "
        "is the weather like in Lisbon?", "Weather in Lisbon during {x}?"],
     "contrasts": [
        ("antonym", "Is Lisbon warm in winter?", "Is Lisbon cold in winter?"),
        ("negation", "Does it rain in Lisbon in summer?", "Does it never rain in Lisbon in "
         "summer?"),
        ("topic_shift", "What is the weather like in Lisbon in July?", "What are hotel prices "
         "like in Lisbon in July?")]},
    {"domain": "travel", "slot": ("number", ["2", "3", "5", "7", "10"]), "forms": [
        "Plan a {x}-day itinerary for Japan", "plan a {x}-day itinerary for japan", "Can you "
        "plan a {x}-day itinerary for Japan?", "{x}-day itinerary for Japan", "I need a {x}-day "
        "itinerary for Japan", "Suggest a {x}-day itinerary for Japan"],
     "contrasts": [
        ("negation", "Plan a Japan itinerary with Tokyo", "Plan a Japan itinerary without "
         "Tokyo"),
        ("topic_shift", "Plan a 7-day itinerary for Japan", "Plan a 7-day budget for Japan"),
        ("antonym", "Plan a fast-paced itinerary for Japan", "Plan a slow-paced itinerary for "
         "Japan")]},
    {"domain": "travel", "slot": ("entity", ["Germany", "Canada", "Thailand", "Brazil",
                                             "Australia"]), "forms": [
        "Do I need a visa to visit {x}?", "do i need a visa to visit {x}", "Is a visa required "
        "to visit {x}?", "Visa requirements for visiting {x}?", "Do I have to get a visa to "
        "visit {x}?", "To visit {x}, do I need a visa?"],
     "contrasts": [
        ("negation", "Do I need a visa to visit Canada with a US passport?", "Do I need a visa "
         "to visit Canada without a US passport?"),
        ("topic_shift", "Do I need a visa to visit Thailand?", "Do I need vaccines to visit "
         "Thailand?"),
        ("antonym", "Do I need a visa to enter Brazil?", "Do I need a visa to leave Brazil?")]},
    {"domain": "travel", "slot": None, "forms": [
        "How much liquid can I take in my carry-on?", "how much liquid can i take in my "
        "carry-on", "What is the liquid limit for carry-on bags?", "How much liquid am I "
        "allowed in a carry-on?", "carry-on liquid limit?", "How much liquid can I bring in my "
        "carry-on bag?"],
     "contrasts": [
        ("topic_shift", "How much liquid can I take in my carry-on?", "How much liquid can I "
         "take in my checked bag?"),
        ("negation", "Can I take a power bank in my carry-on?", "Can I not take a power bank "
         "in my carry-on?"),
        ("antonym", "Is the baggage allowance higher in economy?", "Is the baggage allowance "
         "lower in economy?")]},
    {"domain": "travel", "slot": ("date", ["Monday", "Wednesday", "Friday", "Sunday"]), "forms": [
        "Are museums in Madrid free on {x}?", "are museums in madrid free on {x}", "Can I visit "
        "Madrid museums for free on {x}?", "Madrid museums free on {x}?", "On {x}, are museums "
        "in Madrid free?", "Is entry to Madrid museums free on {x}?"],
     "contrasts": [
        ("antonym", "Are Madrid museums crowded in the morning?", "Are Madrid museums empty in "
         "the morning?"),
        ("negation", "Are museums in Madrid open on holidays?", "Are museums in Madrid not "
         "open on holidays?"),
        ("topic_shift", "Are museums in Madrid free on Sunday?", "Are parks in Madrid free on "
         "Sunday?")]},
    {"domain": "travel", "slot": None, "forms": [
        "How do I get from the airport to the city centre in Rome?", "how to get from the "
        "airport to the city centre in Rome", "Rome: airport to city centre, how do I get "
        "there?", "What is the best way to get from Rome airport to the city centre?",
        "Getting from the airport to the city centre in Rome", "How can I get from the airport "
        "to the city centre in Rome?"],
     "contrasts": [
        ("antonym", "What is the fastest way from Rome airport to the centre?", "What is the "
         "slowest way from Rome airport to the centre?"),
        ("topic_shift", "How do I get from the airport to the city centre in Rome?", "How do I "
         "get from the airport to the port in Rome?"),
        ("negation", "Can I get to Rome from the airport by train?", "Can I not get to Rome "
         "from the airport by train?")]},
    # ------------------------------------------------------------------ finance
    {"domain": "finance", "slot": ("date", ["2022", "2023", "2024", "2025"]), "forms": [
        "What was the inflation rate in {x}?", "what was the inflation rate in {x}", "Inflation "
        "rate in {x}?", "How high was inflation in {x}?", "In {x}, what was the inflation "
        "rate?", "What inflation rate did we have in {x}?"],
     "contrasts": [
        ("antonym", "Does inflation increase interest rates?", "Does inflation decrease "
         "interest rates?"),
        ("negation", "Is inflation included in the index?", "Is inflation not included in the "
         "index?"),
        ("topic_shift", "What was the inflation rate in 2023?", "What was the unemployment rate "
         "in 2023?")]},
    {"domain": "finance", "slot": ("number", ["5,000", "10,000", "50,000", "100,000"]),
     "forms": [
        "How much tax do I pay on ${x} of capital gains?", "how much tax do i pay on ${x} of "
        "capital gains", "Tax on ${x} of capital gains?", "What is the tax on ${x} in capital "
        "gains?", "If I have ${x} of capital gains, how much tax do I pay?", "How much tax is "
        "owed on ${x} of capital gains?"],
     "contrasts": [
        ("antonym", "How are short-term capital gains taxed?", "How are long-term capital gains "
         "taxed?"),
        ("negation", "Are capital gains taxed in a retirement account?", "Are capital gains not "
         "taxed in a retirement account?"),
        ("topic_shift", "How much tax do I pay on capital gains?", "How much tax do I pay on "
         "dividends?")]},
    {"domain": "finance", "slot": ("entity", ["Apple", "Tesla", "Microsoft", "Nvidia",
                                              "Amazon"]), "forms": [
        "What is the dividend yield of {x} stock?", "what's the dividend yield of {x} stock",
        "{x} stock dividend yield?", "How much dividend yield does {x} stock pay?", "Dividend "
        "yield of {x} stock", "Tell me the dividend yield of {x} stock"],
     "contrasts": [
        ("antonym", "Why did Tesla stock rise today?", "Why did Tesla stock fall today?"),
        ("negation", "Does Amazon pay a dividend?", "Does Amazon not pay a dividend?"),
        ("topic_shift", "What is the dividend yield of Apple stock?", "What is the "
         "price-to-earnings ratio of Apple stock?")]},
    {"domain": "finance", "slot": None, "forms": [
        "What is the difference between a Roth IRA and a traditional IRA?", "difference between "
        "a Roth IRA and a traditional IRA", "Roth IRA vs traditional IRA: what is the "
        "difference?", "How does a Roth IRA differ from a traditional IRA?", "What are the "
        "differences between a Roth IRA and a traditional IRA?"],
     "contrasts": [
        ("negation", "Can I contribute to a Roth IRA with a 401k?", "Can I contribute to a Roth "
         "IRA without a 401k?"),
        ("antonym", "What are the advantages of a Roth IRA?", "What are the disadvantages of a "
         "Roth IRA?"),
        ("topic_shift", "What is the difference between a Roth IRA and a traditional IRA?",
         "What is the difference between a Roth IRA and a Roth 401k?")]},
    {"domain": "finance", "slot": ("number", ["15", "20", "25", "30"]), "forms": [
        "Should I get a {x}-year mortgage?", "should i get a {x}-year mortgage", "Is a {x}-year "
        "mortgage a good idea?", "Is it worth getting a {x}-year mortgage?", "{x}-year mortgage: "
        "should I get one?", "Would a {x}-year mortgage make sense for me?"],
     "contrasts": [
        ("antonym", "Should I get a fixed-rate mortgage?", "Should I get a variable-rate "
         "mortgage?"),
        ("negation", "Can I pay off my mortgage early with a penalty?", "Can I pay off my "
         "mortgage early without a penalty?"),
        ("topic_shift", "Should I get a 30-year mortgage?", "Should I refinance a 30-year "
         "mortgage?")]},
    {"domain": "finance", "slot": None, "forms": [
        "How do I improve my credit score?", "how can i improve my credit score", "What are "
        "ways to improve my credit score?", "Improving my credit score: what should I do?",
        "How do I improve the credit score I have?", "Tips to improve my credit score",
        "How to improve my credit score quickly"],
     "contrasts": [
        ("antonym", "What raises a credit score?", "What lowers a credit score?"),
        ("negation", "Does checking my credit score hurt it?", "Does checking my credit score "
         "never hurt it?"),
        ("topic_shift", "How do I improve my credit score?", "How do I check my credit "
         "score?")]},
    {"domain": "finance", "slot": ("entity", ["EUR", "GBP", "JPY", "CHF"]), "forms": [
        "What is the exchange rate from USD to {x}?", "what's the exchange rate from USD to {x}",
        "Exchange rate from USD to {x}?", "How much is one USD in {x}?", "Convert USD to {x}",
        "USD to {x} exchange rate"],
     "contrasts": [
        ("negation", "Is there a fee for converting currency?", "Is there no fee for converting "
         "currency?"),
        ("antonym", "Is the dollar getting stronger?", "Is the dollar getting weaker?"),
        ("topic_shift", "What is the exchange rate from USD to EUR?", "What is the interest "
         "rate in EUR?")]},
    # ------------------------------------------------------------------ health
    {"domain": "health", "slot": ("entity", ["ibuprofen", "paracetamol", "aspirin",
                                             "naproxen"]), "forms": [
        "Is it safe to take {x} with alcohol?", "is it safe to take {x} with alcohol", "Can I "
        "take {x} with alcohol?", "Taking {x} with alcohol, is it safe?", "Is {x} safe with "
        "alcohol?", "Is taking {x} with alcohol dangerous?"],
     "contrasts": [
        ("negation", "Is it safe to take ibuprofen with food?", "Is it safe to take ibuprofen "
         "without food?"),
        ("antonym", "Should I increase the dose of paracetamol?", "Should I decrease the dose "
         "of paracetamol?"),
        ("topic_shift", "Is it safe to take aspirin with alcohol?", "Is it safe to take aspirin "
         "with coffee?")]},
    {"domain": "health", "slot": ("number", ["1", "2", "5", "10"]), "forms": [
        "How many calories do I burn walking {x} miles?", "how many calories do i burn walking "
        "{x} miles", "Calories burned walking {x} miles?", "Walking {x} miles burns how many "
        "calories?", "How many calories are burned by walking {x} miles?", "If I walk {x} miles, "
        "how many calories do I burn?"],
     "contrasts": [
        ("topic_shift", "How many calories do I burn walking 5 miles?", "How many calories do I "
         "burn running 5 miles?"),
        ("antonym", "Does walking burn more calories than cycling?", "Does walking burn fewer "
         "calories than cycling?"),
        ("negation", "Can I lose weight with walking?", "Can I lose weight without walking?")]},
    {"domain": "health", "slot": None, "forms": [
        "What are the symptoms of type 2 diabetes?", "what are the symptoms of type 2 diabetes",
        "Symptoms of type 2 diabetes?", "What symptoms does type 2 diabetes cause?", "Type 2 "
        "diabetes: what are the symptoms?", "How do I know if I have type 2 diabetes?",
        "Signs of type 2 diabetes"],
     "contrasts": [
        ("number", "What are the symptoms of type 2 diabetes?", "What are the symptoms of type "
         "1 diabetes?"),
        ("negation", "Can type 2 diabetes be managed with medication?", "Can type 2 diabetes be "
         "managed without medication?"),
        ("topic_shift", "What are the symptoms of type 2 diabetes?", "What are the causes of "
         "type 2 diabetes?"),
        ("antonym", "What are the symptoms of high blood sugar?", "What are the symptoms of low "
         "blood sugar?")]},
    {"domain": "health", "slot": ("number", ["6", "7", "8", "9"]), "forms": [
        "Is {x} hours of sleep enough?", "is {x} hours of sleep enough", "Are {x} hours of sleep "
        "enough for an adult?", "Do I get enough sleep with {x} hours?", "Is sleeping {x} hours "
        "a night enough?", "{x} hours of sleep: is it enough?"],
     "contrasts": [
        ("antonym", "Is it healthy to sleep more on weekends?", "Is it healthy to sleep less on "
         "weekends?"),
        ("negation", "Can I fall asleep with caffeine?", "Can I not fall asleep with "
         "caffeine?"),
        ("topic_shift", "Is 8 hours of sleep enough?", "Is 8 glasses of water enough?")]},
    {"domain": "health", "slot": None, "forms": [
        "How can I lower my blood pressure naturally?", "how to lower my blood pressure "
        "naturally", "Natural ways to lower my blood pressure", "What can I do to lower my "
        "blood pressure naturally?", "Lowering blood pressure naturally: how?", "How do I lower "
        "my blood pressure without medication?"],
     "contrasts": [
        ("antonym", "How can I lower my blood pressure?", "How can I raise my blood pressure?"),
        ("negation", "Does coffee raise blood pressure?", "Does coffee not raise blood "
         "pressure?"),
        ("topic_shift", "How can I lower my blood pressure naturally?", "How can I lower my "
         "cholesterol naturally?")]},
    {"domain": "health", "slot": ("entity", ["measles", "tetanus", "flu", "COVID-19"]), "forms": [
        "How often do adults need a {x} vaccine?", "how often do adults need a {x} vaccine",
        "How frequently should adults get a {x} vaccine?", "{x} vaccine for adults: how often?",
        "How often should an adult get the {x} vaccine?", "Adults need a {x} vaccine how "
        "often?"],
     "contrasts": [
        ("negation", "Can I get the flu vaccine with a cold?", "Can I not get the flu vaccine "
         "with a cold?"),
        ("antonym", "Is the vaccine more effective in children?", "Is the vaccine less "
         "effective in children?"),
        ("topic_shift", "How often do adults need a tetanus vaccine?", "How often do adults need "
         "a tetanus test?")]},
    {"domain": "health", "slot": ("number", ["200", "400", "600", "800"]), "forms": [
        "Can I take {x} mg of ibuprofen at once?", "can i take {x} mg of ibuprofen at once",
        "Is {x} mg of ibuprofen at once safe?", "Is it safe to take {x} mg of ibuprofen at "
        "once?", "Taking {x} mg of ibuprofen at once, is that ok?", "Is a single {x} mg dose of "
        "ibuprofen safe?"],
     "contrasts": [
        ("antonym", "What is the maximum daily dose of ibuprofen?", "What is the minimum daily "
         "dose of ibuprofen?"),
        ("negation", "Should ibuprofen be taken with water?", "Should ibuprofen not be taken "
         "with water?"),
        ("topic_shift", "Can I take 400 mg of ibuprofen at once?", "Can I take 400 mg of "
         "caffeine at once?")]},
]
