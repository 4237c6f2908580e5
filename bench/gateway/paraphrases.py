"""Prompts for measuring the semantic cache: each with a paraphrase (should hit) and a
near-miss (similar words, different question: must not hit)."""

CASES = [
    (
        "What is the capital of France?",
        "Which city is the capital of France?",
        "What is the capital of Germany?",
    ),
    (
        "How do I reverse a list in Python?",
        "How can I reverse a Python list?",
        "How do I sort a list in Python?",
    ),
    (
        "What is the boiling point of water at sea level?",
        "At sea level, at what temperature does water boil?",
        "What is the freezing point of water at sea level?",
    ),
    (
        "Who wrote the novel Pride and Prejudice?",
        "Who is the author of Pride and Prejudice?",
        "Who wrote the novel Sense and Sensibility?",
    ),
    (
        "How many days are there in a leap year?",
        "How many days does a leap year have?",
        "How many weeks are there in a leap year?",
    ),
    (
        "Translate 'good morning' into Spanish.",
        "How do you say 'good morning' in Spanish?",
        "Translate 'good morning' into Italian.",
    ),
    (
        "What is the square root of 144?",
        "What's the square root of 144?",
        "What is the square root of 169?",
    ),
    (
        "How do I create a new branch in git?",
        "What is the git command to create a new branch?",
        "How do I delete a branch in git?",
    ),
    (
        "What are the symptoms of the flu?",
        "What symptoms does the flu cause?",
        "What are the symptoms of a cold?",
    ),
    (
        "Give me a recipe for chocolate chip cookies.",
        "Can you share a chocolate chip cookie recipe?",
        "Give me a recipe for oatmeal raisin cookies.",
    ),
    (
        "How far is the Moon from the Earth?",
        "What is the distance between the Earth and the Moon?",
        "How far is Mars from the Earth?",
    ),
    (
        "What is the time complexity of binary search?",
        "What's the big-O running time of binary search?",
        "What is the time complexity of bubble sort?",
    ),
    (
        "How do I convert a string to an integer in JavaScript?",
        "In JavaScript, how can I turn a string into an integer?",
        "How do I convert an integer to a string in JavaScript?",
    ),
    (
        "When did World War II end?",
        "In what year did the Second World War end?",
        "When did World War I end?",
    ),
    (
        "What is the largest planet in our solar system?",
        "Which planet is the biggest in the solar system?",
        "What is the smallest planet in our solar system?",
    ),
    (
        "How do I reset my password?",
        "How can I reset my password?",
        "How do I change my username?",
    ),
    (
        "What is the population of Tokyo?",
        "How many people live in Tokyo?",
        "What is the population of Osaka?",
    ),
    (
        "Explain what photosynthesis is.",
        "Can you explain photosynthesis?",
        "Explain what cellular respiration is.",
    ),
    (
        "What is the exchange rate from US dollars to euros?",
        "How many euros is one US dollar worth?",
        "What is the exchange rate from US dollars to yen?",
    ),
    (
        "How long should I boil an egg for a soft yolk?",
        "For a soft yolk, how long do I boil an egg?",
        "How long should I boil an egg for a hard yolk?",
    ),
]
