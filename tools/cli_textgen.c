/* `vttt textgen`: a built-in corpus of simple English-like stories, so the
 * text examples need no download. A story has a cast (a hero, a friend, a
 * place, a treasured object) chosen at its start and referred to all the
 * way through, so predicting it well takes remembering the story's
 * beginning: a small test of long context. Stories are separated by
 * "<|endoftext|>" lines, which `vttt ingest text` and `vttt tokenizer
 * train` treat as document boundaries. The output depends only on the seed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define N_OF(a) (int)(sizeof(a) / sizeof((a)[0]))

static const struct {
    const char *name;
    int she;   /* pronouns she/her, else he/him/his */
} names[] = {
    {"Lily", 1}, {"Max", 0}, {"Anna", 1}, {"Tom", 0}, {"Mia", 1}, {"Ben", 0}, {"Sara", 1}, {"Leo", 0},
    {"Zoe", 1}, {"Sam", 0}, {"Emma", 1}, {"Jack", 0}, {"Nora", 1}, {"Finn", 0}, {"Ruby", 1}, {"Oscar", 0},
    {"Ella", 1}, {"Hugo", 0}, {"Ivy", 1}, {"Theo", 0}, {"Lucy", 1}, {"Milo", 0}, {"Rosa", 1}, {"Felix", 0},
    {"Maya", 1}, {"Otto", 0}, {"Alice", 1}, {"Ravi", 0}, {"Kira", 1}, {"Pablo", 0}, {"Yuki", 1}, {"Omar", 0},
    {"Greta", 1}, {"Ada", 1}, {"Bruno", 0}, {"Clara", 1}, {"Dario", 0}, {"Elsa", 1}, {"Gus", 0}, {"Hana", 1},
    {"Igor", 0}, {"Juno", 1}, {"Kofi", 0}, {"Lena", 1}, {"Marco", 0}, {"Nina", 1}, {"Olaf", 0}, {"Pia", 1},
    {"Quinn", 1}, {"Rita", 1}, {"Soren", 0}, {"Tara", 1}, {"Umar", 0}, {"Vera", 1}, {"Wes", 0}, {"Xena", 1},
    {"Yara", 1}, {"Zack", 0}, {"Bea", 1}, {"Cyrus", 0},
};
static const char *kinds[] = {"rabbit", "fox", "girl", "boy", "cat", "dog", "bear", "mouse", "owl", "duck",
                              "turtle", "frog", "squirrel", "pony", "robot", "dragon", "lamb", "hedgehog",
                              "penguin", "goat", "deer", "badger", "otter", "crow"};
static const char *places[] = {"forest", "village", "garden", "farm", "town", "valley", "meadow", "castle",
                               "harbor", "island", "school", "library", "bakery", "mountain", "river bank",
                               "old mill", "market", "park", "lighthouse", "orchard"};
static const char *objects[] = {"ball", "kite", "hat", "box", "key", "book", "drum", "boat", "lamp", "map",
                                "shell", "coin", "cup", "bell", "scarf", "stone", "flute", "basket", "ring",
                                "feather", "blanket", "clock", "jar", "wagon"};
static const char *colors[] = {"red", "blue", "green", "yellow", "purple", "orange", "white", "black", "pink",
                               "golden", "silver", "brown"};
static const char *adjs[] = {"little", "happy", "kind", "brave", "quiet", "curious", "clever", "shy", "funny",
                             "gentle", "busy", "sleepy", "tiny", "proud", "friendly", "careful"};
static const char *feelings[] = {"happy", "sad", "worried", "excited", "scared", "surprised", "proud", "tired",
                                 "angry", "calm", "hopeful", "lonely"};
static const char *weathers[] = {"sunny", "rainy", "windy", "cold", "warm", "cloudy", "snowy", "foggy"};
static const char *foods[] = {"apples", "bread", "soup", "cake", "berries", "carrots", "cheese", "honey",
                              "pie", "nuts", "cookies", "pears"};
static const char *acts[] = {"play in the grass", "sing songs", "draw pictures", "read stories", "run fast",
                             "climb trees", "count the stars", "dance", "look at the clouds", "build towers",
                             "swim in the pond", "bake bread", "plant flowers", "watch the birds"};
static const char *times[] = {"One morning", "One day", "After lunch", "That evening", "The next day",
                              "Later", "Soon", "At noon", "Before dinner", "In the afternoon"};
static const char *numbers[] = {"two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"};

/* Sentence templates; $ codes: H hero, F friend, K hero's kind, k friend's
 * kind, L place, O object, C its colour, A adjective, E feeling, W weather,
 * D food, V activity, T time (capitalised), N number, s/S subject pronoun
 * (S capitalised), o object pronoun, p/P possessive (P capitalised). */
static const char *openings[] = {
    "Once upon a time, there was a $A $K named $H.",
    "There once was a $A $K called $H who lived in a $L.",
    "In a $A $L far away, there lived a $K named $H.",
    "$H was a $A $K who lived near the $L.",
};
static const char *middles[] = {
    "$H lived in the $L with $p family.",
    "Every day, $H liked to $V.",
    "$H had a $C $O. $S loved the $C $O very much.",
    "$T, $H went to the $L to $V.",
    "$T, $H met a $k named $F.",
    "$F was a $A $k, and $F liked to $V.",
    "\"Hello, $F!\" said $H. \"Do you want to $V with me?\"",
    "\"Yes!\" said $F. \"I love to $V.\"",
    "It was a $W day in the $L.",
    "$H felt $E.",
    "$H and $F ate $D under a big tree.",
    "$F asked, \"$H, where is your $C $O?\"",
    "$H looked for the $C $O everywhere, but $s could not find it.",
    "$S looked under the bed, behind the door, and in the $L.",
    "$F helped $H look for the $O.",
    "They walked $N steps and then $N more.",
    "$H said, \"I am $E, because my $O is gone.\"",
    "\"Do not be $E,\" said $F. \"We will find it together.\"",
    "$T, it started to rain, so $H and $F ran home.",
    "$H told $p mother about the $C $O.",
    "$P mother smiled and gave $o some $D.",
    "$H counted $N birds in the sky.",
    "The $A $k named $F laughed and laughed.",
    "$H and $F sat by the window and watched the $W sky.",
    "$H wanted to $V, but $s was too $E.",
    "$T, $F came back with a surprise.",
    "$H saw something $C near the $L.",
};
static const char *endings[] = {
    "At last, $H found the $C $O under a leaf. $S was very $E, and $s gave $F a big hug.",
    "In the end, $F found the $C $O and gave it back to $H. \"Thank you, $F!\" said $H.",
    "$H and $F became best friends, and they played with the $C $O every day.",
    "From that day on, $H always kept the $C $O safe in the $L.",
    "That night, $H went to sleep with the $C $O, happy and warm.",
};

typedef struct {
    uint64_t s;   /* splitmix64 state */
    int hero, friend_, kind, fkind, place, object, color;
    char *buf;    /* the text so far */
    size_t len, cap;
    int oom;      /* an allocation failed: the text is incomplete */
} story;

static uint64_t rnd(story *st) {
    uint64_t z = (st->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int pick(story *st, int n) { return (int)(rnd(st) % (uint64_t)n); }

/* Appends s, its first letter capitalised when cap; "a" before a vowel
 * becomes "an". */
static void put(story *st, const char *s, int cap) {
    size_t n = strlen(s);
    if (st->len >= 3 && !memcmp(st->buf + st->len - 3, " a ", 3) && strchr("aeiou", s[0]) && s[0]) {
        st->buf[st->len - 1] = 'n';
        put(st, " ", 0);
    }
    if (st->len + n + 1 > st->cap) {
        size_t c = st->cap ? 2 * st->cap : 1 << 16;
        while (c < st->len + n + 1) c *= 2;
        char *p = realloc(st->buf, c);
        if (!p) {
            st->oom = 1;
            return;
        }
        st->buf = p;
        st->cap = c;
    }
    memcpy(st->buf + st->len, s, n);
    if (cap && s[0] >= 'a' && s[0] <= 'z') st->buf[st->len] = (char)(s[0] - 'a' + 'A');
    st->len += n;
}

/* Appends one template with the story's cast. */
static void expand(story *st, const char *t) {
    int she = names[st->hero].she;
    for (; *t; t++) {
        char lit[2] = {*t, 0};
        if (*t != '$') {
            put(st, lit, 0);
            continue;
        }
        switch (*++t) {
        case 'H': put(st, names[st->hero].name, 0); break;
        case 'F': put(st, names[st->friend_].name, 0); break;
        case 'K': put(st, kinds[st->kind], 0); break;
        case 'k': put(st, kinds[st->fkind], 0); break;
        case 'L': put(st, places[st->place], 0); break;
        case 'O': put(st, objects[st->object], 0); break;
        case 'C': put(st, colors[st->color], 0); break;
        case 'A': put(st, adjs[pick(st, N_OF(adjs))], 0); break;
        case 'E': put(st, feelings[pick(st, N_OF(feelings))], 0); break;
        case 'W': put(st, weathers[pick(st, N_OF(weathers))], 0); break;
        case 'D': put(st, foods[pick(st, N_OF(foods))], 0); break;
        case 'V': put(st, acts[pick(st, N_OF(acts))], 0); break;
        case 'T': put(st, times[pick(st, N_OF(times))], 0); break;
        case 'N': put(st, numbers[pick(st, N_OF(numbers))], 0); break;
        case 's': case 'S': put(st, she ? "she" : "he", *t == 'S'); break;
        case 'o': put(st, she ? "her" : "him", 0); break;
        case 'p': case 'P': put(st, she ? "her" : "his", *t == 'P'); break;
        default: lit[0] = *t, put(st, lit, 0); break;
        }
    }
}

/* One story: a cast, an opening, 6 to 20 middle sentences in paragraphs of
 * up to four, an ending. */
static void write_story(story *st) {
    st->hero = pick(st, N_OF(names));
    do st->friend_ = pick(st, N_OF(names));
    while (st->friend_ == st->hero);
    st->kind = pick(st, N_OF(kinds));
    st->fkind = pick(st, N_OF(kinds));
    st->place = pick(st, N_OF(places));
    st->object = pick(st, N_OF(objects));
    st->color = pick(st, N_OF(colors));
    expand(st, openings[pick(st, N_OF(openings))]);
    int n = 6 + pick(st, 15);
    for (int i = 0; i < n; i++) {
        put(st, i % 4 == 3 ? "\n\n" : " ", 0);
        expand(st, middles[pick(st, N_OF(middles))]);
    }
    put(st, "\n\n", 0);
    expand(st, endings[pick(st, N_OF(endings))]);
    put(st, "\n<|endoftext|>\n", 0);
}

int cli_textgen(int argc, char **argv) {
    long long bytes = 2000000;
    unsigned long long seed = 1;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bytes") && i + 1 < argc) bytes = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) path = argv[++i];
        else {
            int help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
            fprintf(help ? stdout : stderr,
                    "usage: vttt textgen [--bytes N (2000000)] [--seed S (1)] [--out FILE (stdout)]\n"
                    "  writes about N bytes of simple stories separated by <|endoftext|> lines\n");
            return help ? 0 : 2;
        }
    }
    FILE *out = path ? fopen(path, "wb") : stdout;
    if (!out) {
        fprintf(stderr, "vttt textgen: cannot create %s\n", path);
        return 1;
    }
    story st = {.s = seed * 0x2545F4914F6CDD1Dull + 1};
    while ((long long)st.len < bytes && !st.oom) write_story(&st);
    int bad = st.oom || fwrite(st.buf, 1, st.len, out) != st.len || fflush(out) != 0;
    free(st.buf);
    if (path && fclose(out) != 0) bad = 1;
    if (bad) fprintf(stderr, "vttt textgen: %s\n", st.oom ? "out of memory" : "write failed");
    return bad;
}
