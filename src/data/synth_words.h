/* Lexicon of the graded synthetic English generator (src/data/synth.c). Data only: every entry
 * carries the first level that may use it (0 = preschool, 1 = first grade), so level 1's
 * vocabulary is a superset of level 0's. Words are stored in their natural case; level 0 output is
 * lowercased as a whole. */
#ifndef TWIST_DATA_SYNTH_WORDS_H
#define TWIST_DATA_SYNTH_WORDS_H

#include <stddef.h>
#include <stdint.h>

/* Noun flags. */
#define SW_MASS 1u   /* uncountable: "some milk", never "a milk" */
#define SW_THROW 2u  /* can be thrown, kicked, caught, rolled (a ball, a stick) */
#define SW_PLURAL 4u /* only plural ("blocks"): always "some"/"the" + plural form */

typedef struct sw_noun {
    const char *sg, *pl;
    uint8_t level, flags;
} sw_noun;

/* Characters: gender 0 = he, 1 = she. */
typedef struct sw_name {
    const char *name;
    uint8_t level, gender;
} sw_name;

/* Family members and friends: `word` is used like a name ("Mom gave Tom a ball") when namelike,
 * otherwise with a possessive ("his sister"). */
typedef struct sw_kin {
    const char *word;
    uint8_t level, gender, namelike;
} sw_kin;

typedef struct sw_animal {
    const char *sg, *pl;
    uint8_t level;
    const char *sound; /* "moo", or NULL */
} sw_animal;

/* A place: "went to the park", "played in the park". */
typedef struct sw_place {
    const char *name;
    const char *at; /* "in", "at", "on", "by" */
    uint8_t level;
} sw_place;

/* Verb forms are all stored: English inflection has too many exceptions to be worth rules. */
typedef struct sw_verb {
    const char *base, *s3, *past, *ing;
    uint8_t level;
} sw_verb;

typedef struct sw_word {
    const char *word;
    uint8_t level;
} sw_word;

#define SW_LIST(name, type) \
    extern const type name[]; \
    extern const size_t name##_count;

SW_LIST(sw_names, sw_name)
SW_LIST(sw_kins, sw_kin)
SW_LIST(sw_people, sw_noun)      /* "the farmer", "a kind baker" */
SW_LIST(sw_animals, sw_animal)
SW_LIST(sw_places, sw_place)
SW_LIST(sw_toys, sw_noun)        /* things a child plays with or carries */
SW_LIST(sw_things, sw_noun)      /* things found or seen (nature, home) */
SW_LIST(sw_foods, sw_noun)
SW_LIST(sw_drinks, sw_noun)
SW_LIST(sw_colors, sw_word)
SW_LIST(sw_thing_adjs, sw_word)  /* for toys, things, animals */
SW_LIST(sw_feelings, sw_word)    /* for people and animals */
SW_LIST(sw_weather, sw_word)     /* "it was a sunny day" */
SW_LIST(sw_food_adjs, sw_word)   /* "yummy", "sweet" */
SW_LIST(sw_people_adjs, sw_word) /* "kind", "brave" */
SW_LIST(sw_verbs_intr, sw_verb)  /* run, jump: people and animals */
SW_LIST(sw_verbs_thing, sw_verb) /* like, find, carry: a thing as object */
SW_LIST(sw_verbs_throw, sw_verb) /* throw, kick: a SW_THROW thing as object */
SW_LIST(sw_verbs_being, sw_verb) /* hug, feed, help: a person or an animal as object */
SW_LIST(sw_verbs_make, sw_verb)  /* build, draw: something made */
SW_LIST(sw_makeables, sw_noun)   /* a tower, a picture */
SW_LIST(sw_adverbs, sw_word)     /* slowly, happily */
SW_LIST(sw_times, sw_word)       /* "One morning", story openers */
SW_LIST(sw_day_parts, sw_word)   /* morning, afternoon */
SW_LIST(sw_function_words, sw_word) /* closed-class words the templates use */

#endif
