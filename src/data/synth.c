/* Graded synthetic English: stories generated from a small grammar over the lexicon in
 * synth_words.c. The default corpus of twist (no download needed) and a controlled corpus for
 * experiments: level 0 is preschool text, level 1 first-grade text (see twist/data.h).
 *
 * How a story is made: pick a cast (a named hero, a companion: animal, family member or friend),
 * a place, a toy and a tense; then emit sentences from templates that refer back to the cast
 * (names, pronouns, "the dog"), so a model can learn dependencies across sentences. Every
 * sentence is built word by word into a buffer; if it falls outside the level's length range it is
 * discarded (and the story state restored) and another is drawn. Agreement (is/are, runs/run),
 * tense and a/an are decided by the builder, not written into templates.
 *
 * Randomness: one xorshift64* stream seeded from (level, seed); every draw is an integer, so the
 * output is byte-identical on every machine. */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "twist/error.h"
#include "data/data_impl.h"
#include "data/synth_words.h"
#include "twist/data.h"

/* ------------------------------------------------------------------------------------------------
 * Random numbers and lexicon access
 * ---------------------------------------------------------------------------------------------- */

typedef struct gen {
    uint64_t rng;
    int level;
    int min_words, max_words; /* sentence length range of the level */
} gen;

static uint64_t next_u64(gen *g) {
    uint64_t x = g->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    g->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, n); the top 32 bits times n (bias below 2^-32 * n, irrelevant here). */
static size_t rnd(gen *g, size_t n) {
    return (size_t)(((next_u64(g) >> 32) * (uint64_t)n) >> 32);
}
static bool chance(gen *g, int percent) { return (int)rnd(g, 100) < percent; }

/* The entries a level may use are a prefix of each list (level-0 entries first). */
static size_t prefix_noun(const sw_noun *l, size_t n, int level) {
    size_t k = 0;
    while (k < n && l[k].level <= level) k++;
    return k;
}
static size_t prefix_verb(const sw_verb *l, size_t n, int level) {
    size_t k = 0;
    while (k < n && l[k].level <= level) k++;
    return k;
}
static size_t prefix_word(const sw_word *l, size_t n, int level) {
    size_t k = 0;
    while (k < n && l[k].level <= level) k++;
    return k;
}

static const sw_noun *pick_noun(gen *g, const sw_noun *l, size_t n) {
    return &l[rnd(g, prefix_noun(l, n, g->level))];
}
static const sw_verb *pick_verb(gen *g, const sw_verb *l, size_t n) {
    return &l[rnd(g, prefix_verb(l, n, g->level))];
}
static const char *pick_word(gen *g, const sw_word *l, size_t n) {
    size_t k = prefix_word(l, n, g->level);
    return k ? l[rnd(g, k)].word : NULL;
}
/* A countable noun (no "a sand"). */
static const sw_noun *count_noun(gen *g, const sw_noun *l, size_t n) {
    for (;;) {
        const sw_noun *x = pick_noun(g, l, n);
        if (!(x->flags & SW_MASS)) return x;
    }
}
#define NOUN(g, list) pick_noun(g, list, list##_count)
#define VERB(g, list) pick_verb(g, list, list##_count)
#define WORD(g, list) pick_word(g, list, list##_count)

static const sw_animal *pick_animal(gen *g) {
    size_t k = 0;
    while (k < sw_animals_count && sw_animals[k].level <= g->level) k++;
    return &sw_animals[rnd(g, k)];
}
static const sw_place *pick_place(gen *g) {
    size_t k = 0;
    while (k < sw_places_count && sw_places[k].level <= g->level) k++;
    return &sw_places[rnd(g, k)];
}
static const sw_name *pick_name(gen *g) {
    size_t k = 0;
    while (k < sw_names_count && sw_names[k].level <= g->level) k++;
    return &sw_names[rnd(g, k)];
}
static const sw_kin *pick_kin(gen *g, bool namelike) {
    const sw_kin *c[32];
    size_t k = 0;
    for (size_t i = 0; i < sw_kins_count && k < 32; i++)
        if (sw_kins[i].level <= g->level && (bool)sw_kins[i].namelike == namelike)
            c[k++] = &sw_kins[i];
    return c[rnd(g, k)];
}

/* Verbs whose subject may be an animal: a fixed subset, looked up by base form. */
static const char *const animal_intr[] = {"run", "walk", "jump", "hop", "swim", "play", "sleep",
                                          "sit", "rest", "hide", "wait", "climb", "nap", "spin",
                                          "roll", "wander", "hurry", "splash", "dig", "crawl",
                                          "stretch", "sneeze", "wiggle", "bounce", "lie down"};
static const char *const animal_being[] = {"see", "find", "follow", "chase", "watch", "like",
                                           "love", "hear", "wait for", "look for", "play with",
                                           "run after", "race"};
/* Motion verbs that take "to the X". */
static const char *const motion[] = {"run", "walk", "hop", "skip", "hurry", "race", "march",
                                     "crawl", "tiptoe"};

static const sw_verb *find_verb(const sw_verb *l, size_t n, const char *base, int level) {
    for (size_t i = 0; i < n; i++)
        if (l[i].level <= level && strcmp(l[i].base, base) == 0) return &l[i];
    return NULL;
}
static const sw_verb *pick_from_names(gen *g, const sw_verb *l, size_t n,
                                      const char *const *names, size_t count) {
    for (int tries = 0; tries < 64; tries++) {
        const sw_verb *v = find_verb(l, n, names[rnd(g, count)], g->level);
        if (v) return v;
    }
    return find_verb(l, n, names[0], g->level);
}
#define NAMES_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------------------------------
 * Sentence buffer
 * ---------------------------------------------------------------------------------------------- */

typedef struct sent {
    char buf[1024];
    size_t len;
    int words;
    bool cap;     /* capitalise the next word */
    bool nospace; /* no space before the next word (after an opening quote) */
    bool overflow;
} sent;

static void s_reset(sent *s) {
    s->len = 0;
    s->words = 0;
    s->cap = true;
    s->nospace = true;
    s->overflow = false;
}

static void s_raw(sent *s, const char *text) {
    size_t n = strlen(text);
    if (s->len + n + 1 >= sizeof s->buf) {
        s->overflow = true;
        return;
    }
    memcpy(s->buf + s->len, text, n);
    s->len += n;
    s->buf[s->len] = '\0';
}

/* One word (or a multi-word entry such as "teddy bear"). */
static void w(sent *s, const char *word) {
    if (!s->nospace) s_raw(s, " ");
    size_t start = s->len;
    s_raw(s, word);
    if (s->cap && !s->overflow) s->buf[start] = (char)toupper((unsigned char)s->buf[start]);
    s->cap = false;
    s->nospace = false;
    s->words++;
    for (const char *p = word; *p; p++) s->words += *p == ' ';
}
/* Punctuation attached to the previous word. */
static void p(sent *s, const char *punct) { s_raw(s, punct); }
static void open_quote(sent *s) {
    if (!s->nospace) s_raw(s, " ");
    s_raw(s, "\"");
    s->nospace = true;
    s->cap = true;
}
static void close_quote(sent *s) { s_raw(s, "\""); }

static bool starts_with_vowel_sound(const char *word) {
    char c = (char)tolower((unsigned char)word[0]);
    if (strncmp(word, "uni", 3) == 0 || strncmp(word, "use", 3) == 0 ||
        strncmp(word, "one", 3) == 0)
        return false;
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}
/* "a" or "an" for the word that follows. */
static void article(sent *s, const char *next) { w(s, starts_with_vowel_sound(next) ? "an" : "a"); }

/* ------------------------------------------------------------------------------------------------
 * Story state
 * ---------------------------------------------------------------------------------------------- */

enum { HE = 0, SHE = 1, IT = 2 };
enum actor_kind { A_NAME, A_KIN_NAME, A_KIN, A_ANIMAL, A_PERSON };
enum verb_form { F_BASE, F_PRESENT, F_PAST, F_ING };

typedef struct actor {
    enum actor_kind kind;
    const char *word; /* "Tom", "Mom", "sister", "dog", "farmer" */
    const sw_animal *animal;
    int gender;
    bool introduced;
} actor;

typedef struct story {
    gen *g;
    bool past;
    actor hero, pal;
    const sw_place *place;
    bool place_known;
    const sw_noun *toy;
    const char *toy_color;
    bool toy_known;
    const actor *last_subject;
    bool no_go; /* the sentence already says where the subject went */
} story;

static const char *subj_pronoun(int gender) {
    return gender == HE ? "he" : gender == SHE ? "she" : "it";
}
static const char *obj_pronoun(int gender) {
    return gender == HE ? "him" : gender == SHE ? "her" : "it";
}
static const char *possessive(int gender) {
    return gender == HE ? "his" : gender == SHE ? "her" : "its";
}

/* A noun phrase for an actor. `subject`: whether it is a subject (he/him). Pronouns are used only
 * for the actor that was the previous subject, and never when both actors share a gender. */
static void actor_np(story *st, sent *s, const actor *a, bool subject) {
    gen *g = st->g;
    const actor *other = a == &st->hero ? &st->pal : &st->hero;
    bool can_pronoun = st->last_subject == a && a->introduced && other->gender != a->gender;
    if (can_pronoun && chance(g, 45)) {
        w(s, subject ? subj_pronoun(a->gender) : obj_pronoun(a->gender));
        return;
    }
    switch (a->kind) {
    case A_NAME:
    case A_KIN_NAME: w(s, a->word); break;
    case A_KIN:
        w(s, possessive(st->hero.gender));
        w(s, a->word);
        break;
    case A_ANIMAL:
    case A_PERSON:
        if (a->introduced || a == &st->hero) {
            w(s, "the");
        } else {
            const char *adj = WORD(g, sw_thing_adjs);
            article(s, adj);
            w(s, adj);
        }
        w(s, a->word);
        break;
    }
}

static void subject(story *st, sent *s, actor *a) {
    actor_np(st, s, a, true);
    a->introduced = true;
    st->last_subject = a;
}
static void object(story *st, sent *s, actor *a) {
    actor_np(st, s, a, false);
    a->introduced = true;
}

/* The verb form for a subject: plural subjects take the base form in the present. */
static const char *vform(const sw_verb *v, enum verb_form f, bool plural) {
    switch (f) {
    case F_BASE: return v->base;
    case F_PRESENT: return plural ? v->base : v->s3;
    case F_PAST: return v->past;
    case F_ING: return v->ing;
    }
    return v->base;
}
static enum verb_form tense(const story *st) { return st->past ? F_PAST : F_PRESENT; }
static const char *be(const story *st, bool plural) {
    return st->past ? (plural ? "were" : "was") : (plural ? "are" : "is");
}
/* Verbs the templates use by name. */
static const sw_verb v_eat = {"eat", "eats", "ate", "eating", 0};
static const sw_verb v_drink = {"drink", "drinks", "drank", "drinking", 0};
static const sw_verb v_go = {"go", "goes", "went", "going", 0};
static const sw_verb v_give = {"give", "gives", "gave", "giving", 0};
static const sw_verb v_see = {"see", "sees", "saw", "seeing", 0};
static const sw_verb v_find = {"find", "finds", "found", "finding", 0};
static const sw_verb v_feel = {"feel", "feels", "felt", "feeling", 0};
static const sw_verb v_have = {"have", "has", "had", "having", 0};
static const sw_verb v_say = {"say", "says", "said", "saying", 0};
static const sw_verb v_watch = {"watch", "watches", "watched", "watching", 0};
static const sw_verb v_want = {"want", "wants", "wanted", "wanting", 0};

static void place_np(story *st, sent *s) {
    w(s, "the");
    w(s, st->place->name);
    st->place_known = true;
}
static void in_place(story *st, sent *s) {
    w(s, st->place->at);
    place_np(st, s);
}

/* "a red ball" / "the red ball" / "some sand". */
static void thing_np(story *st, sent *s, const sw_noun *n, bool definite, const char *adj) {
    if (definite) w(s, "the");
    else if (n->flags & SW_MASS) w(s, "some");
    else article(s, adj ? adj : n->sg);
    if (adj) w(s, adj);
    w(s, n->sg);
}
static void toy_np(story *st, sent *s) {
    if (st->toy_known) {
        thing_np(st, s, st->toy, true, chance(st->g, 50) ? st->toy_color : NULL);
    } else {
        thing_np(st, s, st->toy, false, st->toy_color);
        st->toy_known = true;
    }
}
static void food_np(story *st, sent *s, const sw_noun *f) {
    gen *g = st->g;
    if (f->flags & SW_MASS) {
        w(s, "some");
        if (chance(g, 30)) w(s, WORD(g, sw_food_adjs));
        w(s, f->sg);
    } else if (chance(g, 25)) {
        w(s, chance(g, 50) ? "two" : "three");
        w(s, f->pl);
    } else if (chance(g, 35)) {
        const char *adj = WORD(g, sw_food_adjs);
        article(s, adj);
        w(s, adj);
        w(s, f->sg);
    } else {
        article(s, f->sg);
        w(s, f->sg);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Predicates (verb phrases) shared by both levels
 * ---------------------------------------------------------------------------------------------- */

/* A predicate for `who` (NULL when the subject is plural, "they" or "we"): a verb in form f and
 * its complements. */
static bool stative(const sw_verb *v) {
    static const char *const names[] = {"like", "love", "want", "need", "have", "see", "hear",
                                        "remember", "keep", "lose", "find", "notice", "spot",
                                        "discover", "forgive", "surprise"};
    for (size_t i = 0; i < NAMES_COUNT(names); i++)
        if (strcmp(v->base, names[i]) == 0) return true;
    return false;
}

/* A verb from a list, avoiding stative verbs in the progressive ("was loving"). */
static const sw_verb *verb_for(gen *g, const sw_verb *l, size_t n, enum verb_form f) {
    for (;;) {
        const sw_verb *v = pick_verb(g, l, n);
        if (f != F_ING || !stative(v)) return v;
    }
}

static void predicate(story *st, sent *s, const actor *who, bool plural, enum verb_form f) {
    gen *g = st->g;
    bool animal = who && who->kind == A_ANIMAL;
    int k = (int)rnd(g, animal ? 3 : 7);
    if (animal) k = k == 0 ? 0 : k == 1 ? 3 : 5;
    if (k == 6 && (st->no_go || chance(g, 50))) k = 1; /* "went to the X" less often */
    switch (k) {
    case 0: { /* intransitive */
        const sw_verb *v = animal ? pick_from_names(g, sw_verbs_intr, sw_verbs_intr_count,
                                                    animal_intr, NAMES_COUNT(animal_intr))
                                  : VERB(g, sw_verbs_intr);
        w(s, vform(v, f, plural));
        if (!strchr(v->base, ' ') || chance(g, 30)) {
            int a = (int)rnd(g, g->level ? 6 : 5);
            if (a == 0) in_place(st, s);
            else if (a == 1 && plural) w(s, "together");
            else if (a == 1 && who) {
                w(s, "with");
                object(st, s, who == &st->hero ? &st->pal : &st->hero);
            } else if (a == 2) w(s, chance(g, 50) ? "all day" : "a lot");
            else if (a == 3) w(s, "in the sun");
            else if (a == 5) w(s, WORD(g, sw_adverbs));
        }
        break;
    }
    case 1: { /* a thing */
        const sw_verb *v = verb_for(g, sw_verbs_thing, sw_verbs_thing_count, f);
        w(s, vform(v, f, plural));
        if (chance(g, 50)) {
            toy_np(st, s);
        } else {
            const sw_noun *n = chance(g, 50) ? count_noun(g, sw_things, sw_things_count)
                                             : NOUN(g, sw_toys);
            const char *adj = chance(g, 50) ? WORD(g, sw_thing_adjs) : NULL;
            thing_np(st, s, n, chance(g, 30), adj);
        }
        break;
    }
    case 2: { /* something thrown: the toy if it can be, else a ball */
        const sw_verb *v = VERB(g, sw_verbs_throw);
        w(s, vform(v, f, plural));
        if (st->toy->flags & SW_THROW) {
            toy_np(st, s);
        } else {
            w(s, "the");
            w(s, "ball");
        }
        break;
    }
    case 3: { /* a being: the other actor, or an animal */
        const sw_verb *v = animal ? pick_from_names(g, sw_verbs_being, sw_verbs_being_count,
                                                    animal_being, NAMES_COUNT(animal_being))
                                  : verb_for(g, sw_verbs_being, sw_verbs_being_count, f);
        if (f == F_ING && stative(v)) v = &v_watch;
        w(s, vform(v, f, plural));
        if (who && chance(g, 60)) {
            object(st, s, who == &st->hero ? &st->pal : &st->hero);
        } else {
            const sw_animal *an = pick_animal(g);
            if (chance(g, 40)) {
                w(s, "the");
                w(s, an->pl);
            } else {
                const char *adj = WORD(g, sw_thing_adjs);
                article(s, adj);
                w(s, adj);
                w(s, an->sg);
            }
        }
        break;
    }
    case 4: { /* something made */
        const sw_verb *v = VERB(g, sw_verbs_make);
        w(s, vform(v, f, plural));
        const sw_noun *n = NOUN(g, sw_makeables);
        const char *adj = chance(g, 50) ? WORD(g, sw_thing_adjs) : WORD(g, sw_colors);
        thing_np(st, s, n, false, adj);
        break;
    }
    case 5: { /* eating or drinking */
        if (chance(g, 75)) {
            w(s, vform(&v_eat, f, plural));
            food_np(st, s, NOUN(g, sw_foods));
        } else {
            w(s, vform(&v_drink, f, plural));
            w(s, "some");
            w(s, NOUN(g, sw_drinks)->sg);
        }
        break;
    }
    default: { /* go somewhere */
        w(s, vform(&v_go, f, plural));
        w(s, "to");
        place_np(st, s);
        break;
    }
    }
}

/* ------------------------------------------------------------------------------------------------
 * Level 0: short sentences, preschool words
 * ---------------------------------------------------------------------------------------------- */

/* The actor's full noun phrase, never a pronoun (for "Tom and his dog"). */
static void actor_full(story *st, sent *s, actor *a) {
    const actor *saved = st->last_subject;
    st->last_subject = NULL;
    actor_np(st, s, a, true);
    st->last_subject = saved;
    a->introduced = true;
}

/* "his dog" for a companion animal at first mention, else its usual noun phrase. */
static void pal_with_possessive(story *st, sent *s) {
    if (st->pal.kind == A_ANIMAL && !st->pal.introduced) {
        w(s, possessive(st->hero.gender));
        w(s, st->pal.word);
        st->pal.introduced = true;
    } else {
        actor_full(st, s, &st->pal);
    }
}

static actor *some_actor(story *st) {
    return chance(st->g, 65) || !st->pal.introduced ? &st->hero : &st->pal;
}

static const char *const fond[] = {"love", "like", "hug"};
static const char *const boy_girl[] = {"boy", "girl"};
static const char *const sun_adjs[] = {"hot", "warm", "big", "nice"};

static bool l0_intro(story *st, sent *s, int k) {
    gen *g = st->g;
    enum verb_form f = tense(st);
    switch (k) {
    case 0: { /* tom is a little boy. */
        subject(st, s, &st->hero);
        w(s, be(st, false));
        const char *adj = WORD(g, sw_people_adjs);
        article(s, adj);
        w(s, adj);
        w(s, boy_girl[st->hero.gender]);
        break;
    }
    case 1: { /* tom has a little dog. */
        if (st->pal.kind != A_ANIMAL) return false;
        subject(st, s, &st->hero);
        w(s, vform(&v_have, f, false));
        const char *adj = WORD(g, sw_thing_adjs);
        article(s, adj);
        w(s, adj);
        w(s, st->pal.word);
        st->pal.introduced = true;
        break;
    }
    case 2: /* tom went to the park. */
        subject(st, s, &st->hero);
        w(s, vform(&v_go, f, false));
        w(s, "to");
        place_np(st, s);
        break;
    case 3: /* one day, tom went to the park. */
        if (!st->past) return false;
        w(s, "one");
        w(s, "day");
        p(s, ",");
        subject(st, s, &st->hero);
        w(s, "went");
        w(s, "to");
        place_np(st, s);
        break;
    case 4: /* tom and his dog play in the park. */
        actor_full(st, s, &st->hero);
        w(s, "and");
        pal_with_possessive(st, s);
        st->last_subject = NULL;
        w(s, vform(pick_from_names(g, sw_verbs_intr, sw_verbs_intr_count, animal_intr,
                                   NAMES_COUNT(animal_intr)),
                   f, true));
        in_place(st, s);
        break;
    default: { /* it was a sunny day. */
        w(s, "it");
        w(s, be(st, false));
        const char *adj = WORD(g, sw_weather);
        article(s, adj);
        w(s, adj);
        w(s, "day");
        break;
    }
    }
    p(s, ".");
    return true;
}
#define L0_INTROS 6

static bool l0_middle(story *st, sent *s, int k) {
    gen *g = st->g;
    enum verb_form f = tense(st);
    actor *a = some_actor(st);
    switch (k) {
    case 0: { /* tom saw a big dog. */
        subject(st, s, &st->hero);
        w(s, vform(&v_see, f, false));
        const char *adj = WORD(g, sw_thing_adjs);
        article(s, adj);
        w(s, adj);
        if (st->pal.kind == A_ANIMAL && !st->pal.introduced) {
            w(s, st->pal.word);
            st->pal.introduced = true;
        } else {
            w(s, chance(g, 50) ? count_noun(g, sw_things, sw_things_count)->sg
                               : pick_animal(g)->sg);
        }
        break;
    }
    case 1: /* the dog was fluffy. */
        if (st->pal.kind != A_ANIMAL || !st->pal.introduced) return false;
        subject(st, s, &st->pal);
        w(s, be(st, false));
        if (chance(g, 30)) w(s, "very");
        w(s, chance(g, 50) ? WORD(g, sw_thing_adjs) : WORD(g, sw_feelings));
        break;
    case 2: /* tom and the dog played together. */
        actor_full(st, s, &st->hero);
        w(s, "and");
        pal_with_possessive(st, s);
        st->last_subject = NULL;
        predicate(st, s, NULL, true, f);
        break;
    case 3: { /* mom gave tom a red ball. */
        if (st->toy_known) return false;
        if (st->pal.kind == A_KIN_NAME) subject(st, s, &st->pal);
        else w(s, pick_kin(g, true)->word), st->last_subject = NULL;
        w(s, vform(&v_give, f, false));
        object(st, s, &st->hero);
        toy_np(st, s);
        break;
    }
    case 4: /* tom liked the ball. / he threw the ball. */
        if (!st->toy_known) return false;
        subject(st, s, &st->hero);
        if ((st->toy->flags & SW_THROW) && chance(g, 50))
            w(s, vform(VERB(g, sw_verbs_throw), f, false));
        else
            w(s, vform(VERB(g, sw_verbs_thing), f, false));
        toy_np(st, s);
        break;
    case 5: { /* the dog ran to the ball. */
        if (!st->toy_known || !st->pal.introduced) return false;
        subject(st, s, &st->pal);
        w(s, vform(pick_from_names(g, sw_verbs_intr, sw_verbs_intr_count, motion,
                                   NAMES_COUNT(motion)),
                   f, false));
        w(s, "to");
        toy_np(st, s);
        break;
    }
    case 6: /* tom ate an apple. */
        subject(st, s, a);
        w(s, vform(&v_eat, f, false));
        food_np(st, s, NOUN(g, sw_foods));
        break;
    case 7: /* tom felt sleepy. */
        subject(st, s, a);
        if (chance(g, 50)) w(s, be(st, false));
        else w(s, vform(&v_feel, f, false));
        if (chance(g, 30)) w(s, "very");
        w(s, WORD(g, sw_feelings));
        break;
    case 8: /* the sun was hot. (drawn half as often: few variants) */
        if (chance(g, 50)) return false;
        w(s, "the");
        w(s, "sun");
        w(s, be(st, false));
        w(s, sun_adjs[rnd(g, 4)]);
        break;
    case 9: /* tom wanted to play with the dog. */
        subject(st, s, a);
        w(s, vform(&v_want, f, false));
        w(s, "to");
        predicate(st, s, a, false, F_BASE);
        break;
    case 10: { /* tom found a shiny rock in the park. */
        subject(st, s, a);
        w(s, vform(&v_find, f, false));
        const sw_noun *n = NOUN(g, sw_toys);
        thing_np(st, s, n, false, WORD(g, sw_thing_adjs));
        in_place(st, s);
        break;
    }
    case 11: /* the cow said moo. */
        if (st->pal.kind != A_ANIMAL || !st->pal.animal->sound || !st->pal.introduced)
            return false;
        subject(st, s, &st->pal);
        w(s, vform(&v_say, f, false));
        w(s, st->pal.animal->sound);
        break;
    case 12: /* tom gave the dog some milk. */
        if (st->pal.kind != A_ANIMAL || !st->pal.introduced) return false;
        subject(st, s, &st->hero);
        w(s, vform(&v_give, f, false));
        object(st, s, &st->pal);
        if (chance(g, 50)) food_np(st, s, NOUN(g, sw_foods));
        else w(s, "some"), w(s, NOUN(g, sw_drinks)->sg);
        break;
    case 13: /* the dog can jump very fast. */
        subject(st, s, a);
        w(s, "can");
        predicate(st, s, a, false, F_BASE);
        break;
    default: /* any predicate */
        subject(st, s, a);
        predicate(st, s, a, false, f);
        break;
    }
    p(s, ".");
    return true;
}
#define L0_MIDDLES 16

static bool l0_end(story *st, sent *s, int k) {
    enum verb_form f = tense(st);
    actor *a = some_actor(st);
    switch (k) {
    case 0: /* then tom went home. */
        w(s, "then");
        subject(st, s, a);
        w(s, vform(&v_go, f, false));
        w(s, "home");
        break;
    case 1: /* tom was very happy. */
        subject(st, s, a);
        w(s, be(st, false));
        w(s, "very");
        w(s, chance(st->g, 70) ? "happy" : "glad");
        break;
    case 2: /* tom went to bed. */
        subject(st, s, &st->hero);
        w(s, vform(&v_go, f, false));
        w(s, "to");
        w(s, "bed");
        break;
    case 3: /* tom loved the dog. */
        subject(st, s, &st->hero);
        w(s, vform(pick_from_names(st->g, sw_verbs_being, sw_verbs_being_count, fond,
                                   NAMES_COUNT(fond)),
                   f, false));
        object(st, s, &st->pal);
        w(s, chance(st->g, 50) ? "a lot" : "so much");
        break;
    case 4: /* it was a fun day. (drawn less often: few variants) */
        if (chance(st->g, 40)) return false;
        w(s, "it");
        w(s, be(st, false));
        article(s, "fun");
        w(s, chance(st->g, 50) ? "fun" : "good");
        w(s, "day");
        break;
    default: /* tom and the dog were happy. */
        actor_full(st, s, &st->hero);
        w(s, "and");
        actor_full(st, s, &st->pal);
        w(s, be(st, true));
        w(s, WORD(st->g, sw_feelings));
        break;
    }
    p(s, ".");
    return true;
}
#define L0_ENDS 6

/* ------------------------------------------------------------------------------------------------
 * Level 1: longer sentences, subordinate and relative clauses, dialogue
 * ---------------------------------------------------------------------------------------------- */

/* Subject plus predicate: "Lily picked up the red kite". */
static void clause(story *st, sent *s, actor *a, enum verb_form f) {
    subject(st, s, a);
    predicate(st, s, a, false, f);
}
/* "they ..." or "Lily and her dog ..." */
static void clause_plural(story *st, sent *s, enum verb_form f) {
    if (st->hero.introduced && st->pal.introduced && chance(st->g, 50)) {
        w(s, "they");
    } else {
        actor_full(st, s, &st->hero);
        w(s, "and");
        pal_with_possessive(st, s);
    }
    st->last_subject = NULL;
    predicate(st, s, NULL, true, f);
}
static void any_clause(story *st, sent *s, enum verb_form f) {
    if (chance(st->g, 20)) clause_plural(st, s, f);
    else clause(st, s, some_actor(st), f);
}

/* The actor who speaks: animals talk only when the companion is not a person. */
static actor *speaker(story *st) {
    if (st->pal.kind == A_ANIMAL || !st->pal.introduced) return &st->hero;
    return some_actor(st);
}
/* Name used to address the other actor, or NULL. */
static const char *address(const story *st, const actor *who) {
    const actor *o = who == &st->hero ? &st->pal : &st->hero;
    return o->kind == A_NAME || o->kind == A_KIN_NAME ? o->word : NULL;
}

/* Quoted words, without their closing punctuation. kind 0 statement, 1 question, 2 exclamation. */
static void quote_body(story *st, sent *s, const actor *who, int kind) {
    gen *g = st->g;
    if (kind == 1) {
        switch (rnd(g, 4)) {
        case 0: w(s, "can"), w(s, "we"); break;
        case 1: w(s, "do"), w(s, "you"), w(s, "want"), w(s, "to"); break;
        case 2: w(s, "will"), w(s, "you"), w(s, "help"), w(s, "me"); break;
        default: w(s, "should"), w(s, "we"); break;
        }
        predicate(st, s, NULL, true, F_BASE);
        return;
    }
    if (kind == 2) {
        switch (rnd(g, 3)) {
        case 0: {
            w(s, "look");
            w(s, "at");
            w(s, "that");
            w(s, WORD(g, sw_thing_adjs));
            w(s, pick_animal(g)->sg);
            break;
        }
        case 1: {
            w(s, "what");
            const char *adj = WORD(g, sw_thing_adjs);
            article(s, adj);
            w(s, adj);
            w(s, st->toy->sg);
            w(s, "this");
            w(s, "is");
            break;
        }
        default:
            w(s, "we");
            w(s, "can");
            predicate(st, s, NULL, true, F_BASE);
            break;
        }
        return;
    }
    switch (rnd(g, 6)) {
    case 0:
        w(s, "I");
        w(s, "want");
        w(s, "to");
        predicate(st, s, NULL, false, F_BASE);
        break;
    case 1:
        w(s, "I");
        w(s, "am");
        w(s, "so");
        w(s, WORD(g, sw_feelings));
        w(s, chance(g, 50) ? "today" : "right now");
        break;
    case 2:
        w(s, "we");
        w(s, "should");
        predicate(st, s, NULL, true, F_BASE);
        w(s, "before");
        w(s, "it");
        w(s, "gets");
        w(s, "dark");
        break;
    case 3:
        w(s, "let's");
        predicate(st, s, NULL, true, F_BASE);
        break;
    case 4: {
        w(s, "thank");
        w(s, "you");
        w(s, "for");
        w(s, "the");
        w(s, WORD(g, sw_thing_adjs));
        w(s, NOUN(g, sw_toys)->sg);
        const char *name = address(st, who);
        if (name) p(s, ","), w(s, name);
        break;
    }
    default:
        w(s, "if");
        w(s, "we");
        w(s, "hurry");
        p(s, ",");
        w(s, "we");
        w(s, "can");
        predicate(st, s, NULL, true, F_BASE);
        break;
    }
}

static const char *const say_verbs[3][3] = {{"said", "replied", "whispered"},
                                             {"asked", "asked", "wondered"},
                                             {"shouted", "cried", "laughed"}};
static const char *const ends[3] = {".", "?", "!"};

/* "Can we go?" asked Tom.  /  Tom said, "I want to play."  */
static void dialogue(story *st, sent *s) {
    gen *g = st->g;
    actor *who = speaker(st);
    int kind = (int)rnd(g, 3);
    const char *verb = say_verbs[kind][rnd(g, 3)];
    if (chance(g, 60)) {
        open_quote(s);
        quote_body(st, s, who, kind);
        p(s, kind == 0 ? "," : ends[kind]);
        close_quote(s);
        /* "he said" / "his sister said", but "said Tom" (never "said he"). */
        bool pronoun_first = st->last_subject == who && chance(g, 50);
        if (pronoun_first || who->kind == A_KIN) {
            subject(st, s, who);
            w(s, verb);
        } else {
            w(s, verb);
            actor_full(st, s, who);
            st->last_subject = who;
        }
        p(s, ".");
    } else {
        subject(st, s, who);
        w(s, verb);
        p(s, ",");
        open_quote(s);
        quote_body(st, s, who, kind);
        p(s, ends[kind]);
        close_quote(s);
    }
}

static const char *const day_adjs[] = {"wonderful", "lovely", "busy", "long", "happy",
                                       "special", "perfect", "strange", "good", "fun"};
static const char *const subordinators[] = {"when", "after", "before", "because"};

static bool l1_intro(story *st, sent *s, int k) {
    gen *g = st->g;
    switch (k) {
    case 0: /* One morning, Lily and her dog walked to the market. */
        w(s, WORD(g, sw_times));
        p(s, ",");
        clause_plural(st, s, F_PAST);
        break;
    case 1: { /* Lily was a kind girl who lived near the lake with her grandpa. */
        subject(st, s, &st->hero);
        w(s, "was");
        const char *adj = WORD(g, sw_people_adjs);
        article(s, adj);
        w(s, adj);
        w(s, boy_girl[st->hero.gender]);
        w(s, "who");
        w(s, "lived");
        w(s, "near");
        place_np(st, s);
        w(s, "with");
        pal_with_possessive(st, s);
        break;
    }
    case 2: { /* There was once a shy boy named Tom who loved to build towers. */
        w(s, "there");
        w(s, "was");
        w(s, "once");
        const char *adj = WORD(g, sw_people_adjs);
        article(s, adj);
        w(s, adj);
        w(s, boy_girl[st->hero.gender]);
        w(s, "named");
        w(s, st->hero.word);
        st->hero.introduced = true;
        w(s, "who");
        w(s, chance(g, 50) ? "loved" : "liked");
        w(s, "to");
        predicate(st, s, &st->hero, false, F_BASE);
        st->last_subject = &st->hero;
        break;
    }
    default: /* One day, Tom went to the park because he wanted to see the ducks. */
        w(s, WORD(g, sw_times));
        p(s, ",");
        subject(st, s, &st->hero);
        w(s, "went");
        w(s, "to");
        place_np(st, s);
        w(s, "because");
        subject(st, s, &st->hero);
        w(s, "wanted");
        w(s, "to");
        st->no_go = true;
        predicate(st, s, &st->hero, false, F_BASE);
        st->no_go = false;
        break;
    }
    p(s, ".");
    return true;
}
#define L1_INTROS 4

static bool l1_middle(story *st, sent *s, int k) {
    gen *g = st->g;
    switch (k) {
    case 0: /* When Tom ..., the dog ... . (also after, before) */
    case 1:
    case 2:
        w(s, subordinators[k]);
        any_clause(st, s, F_PAST);
        p(s, ",");
        any_clause(st, s, F_PAST);
        break;
    case 3: { /* Tom ... because he was hungry. / because he wanted to ... */
        actor *a = some_actor(st);
        clause(st, s, a, F_PAST);
        w(s, "because");
        subject(st, s, a);
        if (chance(g, 50)) {
            w(s, "was");
            if (chance(g, 30)) w(s, "very");
            w(s, WORD(g, sw_feelings));
        } else {
            w(s, "wanted");
            w(s, "to");
            predicate(st, s, a, false, F_BASE);
        }
        break;
    }
    case 4: /* Tom ... so that the dog could ... */
        any_clause(st, s, F_PAST);
        w(s, "so");
        w(s, "that");
        subject(st, s, some_actor(st));
        w(s, "could");
        predicate(st, s, st->last_subject, false, F_BASE);
        break;
    case 5: { /* While Tom was ..., the dog ... */
        actor *a = some_actor(st);
        w(s, "while");
        subject(st, s, a);
        w(s, "was");
        predicate(st, s, a, false, F_ING);
        p(s, ",");
        any_clause(st, s, F_PAST);
        break;
    }
    case 6: { /* Tom saw a little duck that was swimming by the pond. */
        actor *a = some_actor(st);
        subject(st, s, a);
        w(s, chance(g, 50) ? "saw" : "noticed");
        const char *adj = WORD(g, sw_thing_adjs);
        article(s, adj);
        w(s, adj);
        w(s, pick_animal(g)->sg);
        w(s, "that");
        w(s, "was");
        w(s, pick_from_names(g, sw_verbs_intr, sw_verbs_intr_count, animal_intr,
                             NAMES_COUNT(animal_intr))
                 ->ing);
        in_place(st, s);
        break;
    }
    case 7: { /* Tom, who was very hungry, ate two apples. */
        actor *a = &st->hero;
        actor_full(st, s, a);
        p(s, ",");
        w(s, "who");
        w(s, "was");
        if (chance(g, 40)) w(s, "very");
        w(s, WORD(g, sw_feelings));
        p(s, ",");
        st->last_subject = a;
        predicate(st, s, a, false, F_PAST);
        break;
    }
    case 8: { /* Tom held up the kite, which was shiny and red. */
        if (!st->toy_known) return false;
        subject(st, s, &st->hero);
        w(s, vform(VERB(g, sw_verbs_thing), F_PAST, false));
        w(s, "the");
        w(s, st->toy->sg);
        p(s, ",");
        w(s, "which");
        w(s, "was");
        w(s, WORD(g, sw_thing_adjs));
        w(s, "and");
        w(s, st->toy_color);
        break;
    }
    case 9: /* dialogue */
    case 10:
    case 11:
        dialogue(st, s);
        return true;
    case 12: /* Tom ..., and then the dog ... */
        any_clause(st, s, F_PAST);
        p(s, ",");
        w(s, "and");
        w(s, "then");
        any_clause(st, s, F_PAST);
        break;
    case 13: { /* Tom wanted to ..., but the dog was sleepy. */
        actor *a = some_actor(st);
        subject(st, s, a);
        w(s, "wanted");
        w(s, "to");
        predicate(st, s, a, false, F_BASE);
        p(s, ",");
        w(s, "but");
        actor *b = a == &st->hero ? &st->pal : &st->hero;
        subject(st, s, b);
        w(s, "was");
        w(s, "too");
        w(s, WORD(g, sw_feelings));
        break;
    }
    case 14: { /* Grandma gave Tom a shiny red kite that she had found at the market. */
        if (st->toy_known) return false;
        int gender;
        if (st->pal.kind == A_KIN_NAME || st->pal.kind == A_KIN || st->pal.kind == A_PERSON) {
            subject(st, s, &st->pal);
            gender = st->pal.gender;
        } else {
            const sw_kin *k0 = pick_kin(g, true);
            w(s, k0->word);
            gender = k0->gender;
            st->last_subject = NULL;
        }
        w(s, "gave");
        object(st, s, &st->hero);
        const char *adj = WORD(g, sw_thing_adjs);
        article(s, adj);
        w(s, adj);
        w(s, st->toy_color);
        w(s, st->toy->sg);
        st->toy_known = true;
        w(s, "that");
        w(s, subj_pronoun(gender));
        w(s, "had");
        static const char *const got[] = {"found", "made", "bought"};
        w(s, got[rnd(g, 3)]);
        in_place(st, s);
        break;
    }
    default: /* If ..., ... will ... (in the present, as a plan) */
        w(s, "if");
        w(s, "it");
        w(s, "is");
        w(s, WORD(g, sw_weather));
        w(s, "tomorrow");
        p(s, ",");
        subject(st, s, &st->hero);
        w(s, "will");
        predicate(st, s, &st->hero, false, F_BASE);
        break;
    }
    p(s, ".");
    return true;
}
#define L1_MIDDLES 16

static bool l1_end(story *st, sent *s, int k) {
    gen *g = st->g;
    switch (k) {
    case 0: /* When the sun went down, they walked home together. */
        w(s, "when");
        w(s, "the");
        w(s, "sun");
        w(s, "went");
        w(s, "down");
        p(s, ",");
        actor_full(st, s, &st->hero);
        w(s, "and");
        actor_full(st, s, &st->pal);
        w(s, chance(g, 50) ? "walked" : "went");
        w(s, "home");
        w(s, "together");
        break;
    case 1: /* Tom felt proud because it had been a wonderful day. */
        subject(st, s, &st->hero);
        w(s, "felt");
        w(s, WORD(g, sw_feelings));
        w(s, "because");
        w(s, "it");
        w(s, "had");
        w(s, "been");
        {
            const char *adj = day_adjs[rnd(g, NAMES_COUNT(day_adjs))];
            article(s, adj);
            w(s, adj);
        }
        w(s, "day");
        break;
    case 2: /* That night, Tom dreamed about the dog and smiled. */
        w(s, "that");
        w(s, "night");
        p(s, ",");
        subject(st, s, &st->hero);
        w(s, "dreamed");
        w(s, "about");
        if (st->toy_known && chance(g, 50)) toy_np(st, s);
        else object(st, s, &st->pal);
        w(s, "and");
        w(s, "smiled");
        break;
    default: /* From that day on, Tom and his dog were the best of friends. */
        w(s, "from");
        w(s, "that");
        w(s, "day");
        w(s, "on");
        p(s, ",");
        actor_full(st, s, &st->hero);
        w(s, "and");
        actor_full(st, s, &st->pal);
        w(s, "were");
        w(s, chance(g, 50) ? "the best of friends" : "very happy together");
        break;
    }
    p(s, ".");
    return true;
}
#define L1_ENDS 4

/* ------------------------------------------------------------------------------------------------
 * Stories
 * ---------------------------------------------------------------------------------------------- */

typedef struct outbuf {
    char *data;
    size_t len, cap;
    bool failed;
} outbuf;

static void out_append(outbuf *o, const char *text, size_t n) {
    if (o->failed) return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 1 << 16;
        while (cap < o->len + n + 1) cap *= 2;
        char *d = realloc(o->data, cap);
        if (!d) {
            o->failed = true;
            return;
        }
        o->data = d;
        o->cap = cap;
    }
    memcpy(o->data + o->len, text, n);
    o->len += n;
    o->data[o->len] = '\0';
}

static void make_cast(story *st) {
    gen *g = st->g;
    memset(st, 0, sizeof *st);
    st->g = g;
    const sw_name *h = pick_name(g);
    st->hero = (actor){A_NAME, h->name, NULL, h->gender, false};
    int r = (int)rnd(g, 100);
    if (r < 50) {
        const sw_animal *a = pick_animal(g);
        st->pal = (actor){A_ANIMAL, a->sg, a, IT, false};
    } else if (r < 72) {
        const sw_kin *k = pick_kin(g, true);
        st->pal = (actor){A_KIN_NAME, k->word, NULL, k->gender, false};
    } else if (r < 82) {
        const sw_kin *k = pick_kin(g, false);
        st->pal = (actor){A_KIN, k->word, NULL, k->gender, false};
    } else if (r < 92 || g->level == 0) {
        const sw_name *f;
        do f = pick_name(g);
        while (f == h);
        st->pal = (actor){A_NAME, f->name, NULL, f->gender, false};
    } else {
        const sw_noun *p0 = NOUN(g, sw_people);
        st->pal = (actor){A_PERSON, p0->sg, NULL, (int)rnd(g, 2), false};
    }
    st->place = pick_place(g);
    st->toy = NOUN(g, sw_toys);
    st->toy_color = WORD(g, sw_colors);
    st->past = g->level > 0 ? chance(g, 92) : chance(g, 75);
}

/* One sentence of the given phase (0 intro, 1 middle, 2 end); the template is redrawn until the
 * sentence's length fits the level. `used`: middle templates already used in this story. */
static void sentence(story *st, sent *s, int phase, uint32_t *used) {
    gen *g = st->g;
    for (int attempt = 0; attempt < 400; attempt++) {
        story saved = *st;
        s_reset(s);
        bool ok;
        int k;
        if (g->level == 0) {
            k = (int)rnd(g, phase == 0 ? L0_INTROS : phase == 1 ? L0_MIDDLES : L0_ENDS);
            if (phase == 1 && (*used >> k & 1u)) continue;
            ok = phase == 0 ? l0_intro(st, s, k) : phase == 1 ? l0_middle(st, s, k)
                                                               : l0_end(st, s, k);
        } else {
            k = (int)rnd(g, phase == 0 ? L1_INTROS : phase == 1 ? L1_MIDDLES : L1_ENDS);
            /* dialogue (9-11) may repeat; other templates once per story */
            if (phase == 1 && (k < 9 || k > 11) && (*used >> k & 1u)) continue;
            ok = phase == 0 ? l1_intro(st, s, k) : phase == 1 ? l1_middle(st, s, k)
                                                               : l1_end(st, s, k);
        }
        if (ok && !s->overflow && s->words >= g->min_words && s->words <= g->max_words) {
            if (phase == 1) *used |= 1u << k;
            return;
        }
        *st = saved;
    }
    /* Fallback, in range for both levels: "Tom played with his dog in the park for a long time." */
    s_reset(s);
    subject(st, s, &st->hero);
    w(s, "played");
    if (g->level > 0) {
        w(s, "with");
        pal_with_possessive(st, s);
        in_place(st, s);
        w(s, "for a long time");
    }
    p(s, ".");
}

/* Appends one story; returns its word count. */
static size_t story_emit(gen *g, outbuf *o) {
    story st;
    st.g = g;
    make_cast(&st);
    int n = g->level == 0 ? 3 + (int)rnd(g, 4) : 4 + (int)rnd(g, 5);
    uint32_t used = 0;
    size_t words = 0;
    sent s;
    for (int i = 0; i < n; i++) {
        int phase = i == 0 ? 0 : i == n - 1 ? 2 : 1;
        sentence(&st, &s, phase, &used);
        if (g->level == 0)
            for (size_t j = 0; j < s.len; j++)
                s.buf[j] = (char)tolower((unsigned char)s.buf[j]);
        if (i > 0) out_append(o, " ", 1);
        out_append(o, s.buf, s.len);
        words += (size_t)s.words;
    }
    return words;
}

tw_status tw_synth_generate(int level, uint64_t seed, size_t words, char **text,
                            size_t *length) {
    if (!text || !length)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_synth_generate: text and length are required");
    *text = NULL;
    *length = 0;
    if (level < 0 || level >= TW_SYNTH_LEVELS)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "synthetic corpus level %d: must be 0 or 1",
                        level);
    if (words == 0)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "synthetic corpus: word count must be > 0");
    gen g = {0, level, level == 0 ? 3 : 8, level == 0 ? 7 : 20};
    g.rng = tw_splitmix64(seed ^ tw_splitmix64(0x7379 + (uint64_t)level));
    if (!g.rng) g.rng = 1;
    outbuf o = {0};
    size_t done = 0;
    while (done < words && !o.failed) {
        if (done > 0) out_append(&o, "\n\n", 2);
        done += story_emit(&g, &o);
    }
    out_append(&o, "\n", 1);
    if (o.failed) {
        free(o.data);
        return tw_error(TW_ERR_OUT_OF_MEMORY, "synthetic corpus: out of memory at %zu bytes",
                        o.len);
    }
    *text = o.data;
    *length = o.len;
    return TW_OK;
}

tw_status tw_synth_write(int level, uint64_t seed, size_t words, const char *path) {
    if (!path) return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_synth_write: path is NULL");
    char *text;
    size_t length;
    tw_status st = tw_synth_generate(level, seed, words, &text, &length);
    if (st != TW_OK) return st;
    tw_write_piece piece = {text, length};
    st = tw_write_atomic(path, &piece, 1);
    free(text);
    return st;
}

/* ------------------------------------------------------------------------------------------------
 * Lexicon size
 * ---------------------------------------------------------------------------------------------- */

typedef struct lemma_set {
    const char **items;
    size_t n, cap;
} lemma_set;

static void lemma_add(lemma_set *set, const char *word) {
    for (size_t i = 0; i < set->n; i++)
        if (strcasecmp(set->items[i], word) == 0) return;
    if (set->n < set->cap) set->items[set->n++] = word;
}

size_t tw_synth_lexicon_size(int level) {
    if (level < 0 || level >= TW_SYNTH_LEVELS) return 0;
    lemma_set set = {0};
    lemma_set *s = &set;
    s->cap = 8192;
    s->items = malloc(s->cap * sizeof *s->items);
    if (!s->items) return 0;
#define ADD_ALL(list, field)                                              \
    for (size_t i = 0; i < list##_count; i++)                             \
        if (list[i].level <= level) lemma_add(s, list[i].field);
    ADD_ALL(sw_names, name)
    ADD_ALL(sw_kins, word)
    ADD_ALL(sw_people, sg)
    ADD_ALL(sw_animals, sg)
    ADD_ALL(sw_places, name)
    ADD_ALL(sw_toys, sg)
    ADD_ALL(sw_things, sg)
    ADD_ALL(sw_foods, sg)
    ADD_ALL(sw_drinks, sg)
    ADD_ALL(sw_colors, word)
    ADD_ALL(sw_thing_adjs, word)
    ADD_ALL(sw_feelings, word)
    ADD_ALL(sw_weather, word)
    ADD_ALL(sw_food_adjs, word)
    ADD_ALL(sw_people_adjs, word)
    ADD_ALL(sw_verbs_intr, base)
    ADD_ALL(sw_verbs_thing, base)
    ADD_ALL(sw_verbs_throw, base)
    ADD_ALL(sw_verbs_being, base)
    ADD_ALL(sw_verbs_make, base)
    ADD_ALL(sw_makeables, sg)
    ADD_ALL(sw_adverbs, word)
    ADD_ALL(sw_day_parts, word)
    ADD_ALL(sw_function_words, word)
#undef ADD_ALL
    free(s->items);
    return s->n;
}
