/*
 * test-imap-parser.c: the incremental IMAP command parser of
 * daemon/imap/imap-parser.c.  One table of inputs and the events they must give
 * (command, continuation, error, fatal, each at an input offset): LOGIN
 * with atoms, quoted strings and literals ({n} and {n+}, binary, empty),
 * AUTHENTICATE with an initial response, ID with lists and NIL, nested
 * lists, commands we only tokenise, pipelining, bad tags, missing commands,
 * bad quoted strings, NUL bytes, unbalanced lists, bad lines ending with a
 * literal announcement, and the line and literal limits with small values.
 * Then generated inputs at the real limits (8 KiB lines and literals, a
 * 1 MB line, counts of 2^32 and 30 digits), the in-command flag, freeing a
 * parser at every point of a command, gh_imap_command_clear and
 * gh_imap_quote.
 *
 * Every input is fed whole, one byte at a time and in random chunks (the
 * seed is GTest's: rerun with --seed to repeat), each time as a caller
 * would: what the parser left unconsumed is fed again with the next chunk.
 * All three must give the same events at the same offsets: NEED_MORE, with
 * everything consumed, in between.  Each call gets a heap copy of exactly
 * the bytes it may read, so valgrind reports any read past `len`.
 *
 * The line limit counts every byte but literal contents, terminators
 * included (CRLF 2, LF 1); the byte that takes the count past max_line is
 * the FATAL point (see daemon/imap/imap-parser.c).
 */
#include "gh-build.h"

#include "imap/imap-parser.h"

#include <string.h>

/* A table string that may hold NUL bytes: its bytes and its length. */
#define BYTES(s) s, sizeof(s) - 1

#define MAX_LINE 8192
#define MAX_LITERAL 8192

/* 64 octets: the longest tag */
#define T64 "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789ABCDEF"

/* An event's offset: the end of the input. */
#define END 0

typedef struct {
	GhImapStatus st; /* NEED_MORE ends the list */
	gsize at;        /* input bytes consumed when it is returned (END: all) */
	const char *tag;
	const char *name;
	/* The arguments, rendered: atoms as they are, quoted strings in
	 * quotes, literals as {len}"bytes", NIL as <NIL>, lists as ( ... ),
	 * separated by one space; in strings '"' and '\' are escaped and
	 * bytes outside 0x20..0x7e are \xNN.  NULL for ERROR and FATAL. */
	const char *args;
	const char *error;
} Event;

/* clang-format off */
#define CMD(at, tag, name, args) {GH_IMAP_COMMAND, at, tag, name, args, NULL}
#define CONT(at) {GH_IMAP_CONTINUE, at, NULL, NULL, NULL, NULL}
#define ERR(at, tag, name, error) {GH_IMAP_ERROR, at, tag, name, NULL, error}
#define FATAL(at, tag, name, error) {GH_IMAP_FATAL, at, tag, name, NULL, error}
/* clang-format on */

#define MAX_EVENTS 4

typedef struct {
	const char *path; /* the test is /gatehouse/imap-parser/<path> */
	const char *in;
	gsize len;
	gsize max_line;    /* 0: MAX_LINE */
	gsize max_literal; /* 0: MAX_LITERAL */
	Event want[MAX_EVENTS];
} Case;

static const char E_TAG[] = "Invalid tag";
static const char E_CMD[] = "Missing command";
static const char E_QUOTED[] = "Invalid quoted string";
static const char E_SYNTAX[] = "Syntax error";
static const char E_NUL[] = "NUL byte in command";
static const char E_LINE[] = "Line too long";
static const char E_LITERAL[] = "Literal too long";
static const char E_LITPLUS[] = "Invalid command followed by a literal";

/* clang-format off */
static const Case cases[] = {
    /* ---- LOGIN ---- */
    {"login-atoms", BYTES("a001 LOGIN alice secret\r\n"), 0, 0,
     {CMD(END, "a001", "LOGIN", "alice secret")}},
    {"login-lower-case", BYTES("a001 login alice secret\r\n"), 0, 0,
     {CMD(END, "a001", "LOGIN", "alice secret")}},
    {"login-mixed-case", BYTES("a001 LoGiN Alice Secret\r\n"), 0, 0,
     {CMD(END, "a001", "LOGIN", "Alice Secret")}},
    {"login-bare-lf", BYTES("a001 LOGIN alice secret\n"), 0, 0,
     {CMD(END, "a001", "LOGIN", "alice secret")}},
    {"login-quoted", BYTES("a001 LOGIN \"alice smith\" \"pass word\"\r\n"), 0, 0,
     {CMD(END, "a001", "LOGIN", "\"alice smith\" \"pass word\"")}},
    /* a1 LOGIN "al\"ice" "p\\w\"d": al"ice and p\w"d */
    {"login-quoted-escapes", BYTES("a1 LOGIN \"al\\\"ice\" \"p\\\\w\\\"d\"\r\n"), 0, 0,
     {CMD(END, "a1", "LOGIN", "\"al\\\"ice\" \"p\\\\w\\\"d\"")}},
    {"login-quoted-only-escapes", BYTES("a1 LOGIN \"\\\\\" \"\\\"\"\r\n"), 0, 0,
     {CMD(END, "a1", "LOGIN", "\"\\\\\" \"\\\"\"")}},
    {"login-quoted-empty", BYTES("a1 LOGIN \"\" \"\"\r\n"), 0, 0,
     {CMD(END, "a1", "LOGIN", "\"\" \"\"")}},
    {"login-quoted-utf8", BYTES("a1 LOGIN \"j\xc3\xb6rg\" \"p\xc3\xa4ss\"\r\n"), 0, 0,
     {CMD(END, "a1", "LOGIN", "\"j\\xc3\\xb6rg\" \"p\\xc3\\xa4ss\"")}},
    {"login-quoted-tab", BYTES("a1 LOGIN \"a\tb\" c\r\n"), 0, 0,
     {CMD(END, "a1", "LOGIN", "\"a\\x09b\" c")}},
    {"login-quoted-specials", BYTES("a1 LOGIN \"(a) {3} %*\" x\r\n"), 0, 0,
     {CMD(END, "a1", "LOGIN", "\"(a) {3} %*\" x")}},

    /* ---- literals ---- */
    {"login-literal", BYTES("a1 LOGIN {5}\r\nalice {6}\r\nsecret\r\n"), 0, 0,
     {CONT(14), CONT(25), CMD(END, "a1", "LOGIN", "{5}\"alice\" {6}\"secret\"")}},
    {"login-literal-plus", BYTES("a1 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n"), 0, 0,
     {CMD(END, "a1", "LOGIN", "{5}\"alice\" {6}\"secret\"")}},
    {"literal-plus-then-sync", BYTES("a1 LOGIN {5+}\r\nalice {6}\r\nsecret\r\n"), 0, 0,
     {CONT(26), CMD(END, "a1", "LOGIN", "{5}\"alice\" {6}\"secret\"")}},
    {"literal-sync-lf", BYTES("a1 LOGIN {5}\nalice pw\n"), 0, 0,
     {CONT(13), CMD(END, "a1", "LOGIN", "{5}\"alice\" pw")}},
    /* CR, LF and NUL are data inside a literal */
    {"literal-binary", BYTES("a1 LOGIN {3}\r\nbob {8}\r\np\r\nw\0rd!\r\n"), 0, 0,
     {CONT(14), CONT(23), CMD(END, "a1", "LOGIN", "{3}\"bob\" {8}\"p\\x0d\\x0aw\\x00rd!\"")}},
    {"literal-only-crlf", BYTES("a1 LOGIN {2+}\r\n\r\n {1+}\r\n\n\r\n"), 0, 0,
     {CMD(END, "a1", "LOGIN", "{2}\"\\x0d\\x0a\" {1}\"\\x0a\"")}},
    /* a literal that looks like commands is still data */
    {"literal-holding-commands", BYTES("a1 LOGIN {9+}\r\na2 NOOP\r\n x\r\n"), 0, 0,
     {CMD(END, "a1", "LOGIN", "{9}\"a2 NOOP\\x0d\\x0a\" x")}},
    {"literal-empty", BYTES("a1 LOGIN {0}\r\n {0}\r\n\r\n"), 0, 0,
     {CONT(14), CONT(20), CMD(END, "a1", "LOGIN", "{0}\"\" {0}\"\"")}},
    {"literal-empty-plus", BYTES("a1 LOGIN {0+}\r\n {0+}\r\n\r\n"), 0, 0,
     {CMD(END, "a1", "LOGIN", "{0}\"\" {0}\"\"")}},
    {"literal-in-list", BYTES("a1 ID (\"name\" {4+}\r\nmutt)\r\n"), 0, 0,
     {CMD(END, "a1", "ID", "( \"name\" {4}\"mutt\" )")}},
    {"literal-leading-zeros", BYTES("a1 LOGIN {005+}\r\nalice x\r\n"), 0, 0,
     {CMD(END, "a1", "LOGIN", "{5}\"alice\" x")}},
    /* the input stops inside the literal: the command is still open */
    {"literal-pending", BYTES("a1 LOGIN {5}\r\nali"), 0, 0, {CONT(14)}},
    {"literal-plus-pending", BYTES("a1 LOGIN {5+}\r\nali"), 0, 0, {{0}}},

    /* ---- AUTHENTICATE, ID, lists ---- */
    {"authenticate-sasl-ir", BYTES("a1 AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n"), 0, 0,
     {CMD(END, "a1", "AUTHENTICATE", "PLAIN AGFsaWNlAHB3")}},
    {"authenticate-empty-ir", BYTES("a1 AUTHENTICATE PLAIN =\r\n"), 0, 0,
     {CMD(END, "a1", "AUTHENTICATE", "PLAIN =")}},
    {"authenticate-no-ir", BYTES("a1 authenticate plain\r\n"), 0, 0,
     {CMD(END, "a1", "AUTHENTICATE", "plain")}},
    {"id-list", BYTES("a1 ID (\"name\" \"mutt\" \"version\" \"2.0\")\r\n"), 0, 0,
     {CMD(END, "a1", "ID", "( \"name\" \"mutt\" \"version\" \"2.0\" )")}},
    {"id-nil", BYTES("a1 ID NIL\r\n"), 0, 0, {CMD(END, "a1", "ID", "<NIL>")}},
    {"id-nil-lower-case", BYTES("a1 ID nil\r\n"), 0, 0, {CMD(END, "a1", "ID", "<NIL>")}},
    {"id-nil-mixed-case", BYTES("a1 ID nIl\n"), 0, 0, {CMD(END, "a1", "ID", "<NIL>")}},
    {"id-nil-quoted", BYTES("a1 ID \"NIL\"\r\n"), 0, 0, {CMD(END, "a1", "ID", "\"NIL\"")}},
    {"id-nil-longer", BYTES("a1 ID NILS NI\r\n"), 0, 0, {CMD(END, "a1", "ID", "NILS NI")}},
    {"id-nil-in-list", BYTES("a1 ID (\"name\" NIL)\r\n"), 0, 0,
     {CMD(END, "a1", "ID", "( \"name\" <NIL> )")}},
    {"id-empty-list", BYTES("a1 ID ()\r\n"), 0, 0, {CMD(END, "a1", "ID", "( )")}},
    {"list-nested", BYTES("a1 X (a (b (c \"d\") NIL) ())\r\n"), 0, 0,
     {CMD(END, "a1", "X", "( a ( b ( c \"d\" ) <NIL> ) ( ) )")}},
    {"list-deep", BYTES("a1 X ((((((((x))))))))\r\n"), 0, 0,
     {CMD(END, "a1", "X", "( ( ( ( ( ( ( ( x ) ) ) ) ) ) ) )")}},
    {"list-spaces", BYTES("a1 X ( a  b )\r\n"), 0, 0, {CMD(END, "a1", "X", "( a b )")}},
    {"list-adjacent", BYTES("a1 X (a)(b)\r\n"), 0, 0, {CMD(END, "a1", "X", "( a ) ( b )")}},

    /* ---- commands we only tokenise ---- */
    {"select", BYTES("a1 SELECT INBOX\r\n"), 0, 0, {CMD(END, "a1", "SELECT", "INBOX")}},
    {"noop", BYTES("a1 NOOP\r\n"), 0, 0, {CMD(END, "a1", "NOOP", "")}},
    {"trailing-space", BYTES("a1 CAPABILITY \r\n"), 0, 0, {CMD(END, "a1", "CAPABILITY", "")}},
    {"spaces", BYTES("a1  LOGIN   alice  pw  \r\n"), 0, 0, {CMD(END, "a1", "LOGIN", "alice pw")}},
    {"store-flags", BYTES("a1 STORE 1:*,5 +FLAGS (\\Seen \\Deleted)\r\n"), 0, 0,
     {CMD(END, "a1", "STORE", "1:*,5 +FLAGS ( \\Seen \\Deleted )")}},
    {"list-pattern", BYTES("a1 LIST \"\" %\r\n"), 0, 0, {CMD(END, "a1", "LIST", "\"\" %")}},
    {"fetch-section", BYTES("a1 FETCH 1 BODY[HEADER.FIELDS (FROM)]\r\n"), 0, 0,
     {CMD(END, "a1", "FETCH", "1 BODY[HEADER.FIELDS ( FROM ) ]")}},
    {"atom-8bit", BYTES("a1 SELECT \xc3\xa4pfel\r\n"), 0, 0,
     {CMD(END, "a1", "SELECT", "\\xc3\\xa4pfel")}},
    {"tag-max", BYTES(T64 " NOOP\r\n"), 0, 0, {CMD(END, T64, "NOOP", "")}},
    {"tag-bracket", BYTES("a]1 NOOP\r\n"), 0, 0, {CMD(END, "a]1", "NOOP", "")}},
    {"tag-punctuation", BYTES("a.b-c_d:1 NOOP\r\n"), 0, 0, {CMD(END, "a.b-c_d:1", "NOOP", "")}},

    /* ---- pipelining: one command per call ---- */
    {"pipelined", BYTES("a1 CAPABILITY\r\na2 LOGIN alice pw\r\na3 LOGOUT\r\n"), 0, 0,
     {CMD(15, "a1", "CAPABILITY", ""), CMD(34, "a2", "LOGIN", "alice pw"),
      CMD(END, "a3", "LOGOUT", "")}},
    {"pipelined-literal-plus", BYTES("a1 LOGIN {5+}\r\nalice pw\r\na2 NOOP\r\n"), 0, 0,
     {CMD(25, "a1", "LOGIN", "{5}\"alice\" pw"), CMD(END, "a2", "NOOP", "")}},
    {"pipelined-partial", BYTES("a1 NOOP\r\na2 NO"), 0, 0, {CMD(9, "a1", "NOOP", "")}},
    {"pipelined-bare-lf", BYTES("a1 NOOP\na2 NOOP\n"), 0, 0,
     {CMD(8, "a1", "NOOP", ""), CMD(END, "a2", "NOOP", "")}},

    /* ---- bad tags: ERROR, tag NULL ---- */
    {"tag-plus", BYTES("+ LOGIN a b\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-plus-inside", BYTES("a+1 NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-empty-line", BYTES("\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-empty-line-lf", BYTES("\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-leading-space", BYTES(" a1 NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-too-long", BYTES(T64 "x NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-quote", BYTES("a\"1 NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-brace", BYTES("a{1 NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-paren", BYTES("a(1 NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-close-paren", BYTES("a)1 NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-star", BYTES("* NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-percent", BYTES("a%1 NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-backslash", BYTES("a\\1 NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-8bit", BYTES("\xc3\xa4" "1 NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-tab", BYTES("a1\tNOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-ctl", BYTES("a\x01 NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-del", BYTES("a\x7f NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_TAG)}},
    {"tag-nul", BYTES("a\0" "1 NOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_NUL)}},
    {"tag-bare-cr", BYTES("a1\rNOOP\r\n"), 0, 0, {ERR(END, NULL, NULL, E_SYNTAX)}},

    /* ---- missing command: ERROR with the tag ---- */
    {"command-missing", BYTES("a1\r\n"), 0, 0, {ERR(END, "a1", NULL, E_CMD)}},
    {"command-missing-lf", BYTES("a1\n"), 0, 0, {ERR(END, "a1", NULL, E_CMD)}},
    {"command-missing-space", BYTES("a1 \r\n"), 0, 0, {ERR(END, "a1", NULL, E_CMD)}},
    {"command-missing-spaces", BYTES("a1    \r\n"), 0, 0, {ERR(END, "a1", NULL, E_CMD)}},
    {"command-quoted", BYTES("a1 \"LOGIN\" a b\r\n"), 0, 0, {ERR(END, "a1", NULL, E_CMD)}},
    {"command-list", BYTES("a1 (x)\r\n"), 0, 0, {ERR(END, "a1", NULL, E_CMD)}},
    {"command-literal", BYTES("a1 {3}\r\na2 NOOP\r\n"), 0, 0,
     {ERR(8, "a1", NULL, E_CMD), CMD(END, "a2", "NOOP", "")}},
    {"command-literal-plus", BYTES("a1 {3+}\r\nabc\r\n"), 0, 0,
     {FATAL(9, "a1", NULL, E_LITPLUS)}},
    {"command-paren-after-name", BYTES("a1 ID(x)\r\n"), 0, 0, {ERR(END, "a1", NULL, E_SYNTAX)}},

    /* ---- bad quoted strings ---- */
    {"quoted-bad-escape", BYTES("a1 LOGIN \"a\\b\" c\r\n"), 0, 0,
     {ERR(END, "a1", "LOGIN", E_QUOTED)}},
    {"quoted-escaped-n", BYTES("a1 LOGIN \"a\\nb\" c\r\n"), 0, 0,
     {ERR(END, "a1", "LOGIN", E_QUOTED)}},
    {"quoted-escaped-space", BYTES("a1 LOGIN \"a\\ b\" c\r\n"), 0, 0,
     {ERR(END, "a1", "LOGIN", E_QUOTED)}},
    {"quoted-unterminated", BYTES("a1 LOGIN alice \"secret\r\na2 NOOP\r\n"), 0, 0,
     {ERR(24, "a1", "LOGIN", E_QUOTED), CMD(END, "a2", "NOOP", "")}},
    {"quoted-unterminated-lf", BYTES("a1 LOGIN \"x\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_QUOTED)}},
    {"quoted-cr", BYTES("a1 LOGIN \"a\rb\" c\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_QUOTED)}},
    {"quoted-escape-at-eol", BYTES("a1 LOGIN \"a\\\r\n"), 0, 0,
     {ERR(END, "a1", "LOGIN", E_QUOTED)}},
    {"quoted-escape-lf", BYTES("a1 LOGIN \"a\\\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_QUOTED)}},
    {"quoted-nul", BYTES("a1 LOGIN \"a\0b\" c\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_NUL)}},

    /* ---- NUL, CR, other bytes out of place ---- */
    {"nul-in-atom", BYTES("a1 LOGIN al\0ce pw\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_NUL)}},
    {"nul-in-name", BYTES("a1 NO\0OP\r\n"), 0, 0, {ERR(END, "a1", NULL, E_NUL)}},
    {"nul-between", BYTES("a1 NOOP \0\r\n"), 0, 0, {ERR(END, "a1", "NOOP", E_NUL)}},
    {"nul-then-next", BYTES("\0\r\na2 NOOP\r\n"), 0, 0,
     {ERR(3, NULL, NULL, E_NUL), CMD(END, "a2", "NOOP", "")}},
    {"tab-separator", BYTES("a1 LOGIN a\tb\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"bare-cr", BYTES("a1 NOOP\rX\r\n"), 0, 0, {ERR(END, "a1", "NOOP", E_SYNTAX)}},
    {"double-cr", BYTES("a1 NOOP\r\r\n"), 0, 0, {ERR(END, "a1", "NOOP", E_SYNTAX)}},
    {"cr-in-args", BYTES("a1 LOGIN a\rb\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},

    /* ---- lists and separators ---- */
    {"list-unclosed", BYTES("a1 ID (a\r\n"), 0, 0, {ERR(END, "a1", "ID", E_SYNTAX)}},
    {"list-unclosed-nested", BYTES("a1 ID ((a)\r\n"), 0, 0, {ERR(END, "a1", "ID", E_SYNTAX)}},
    {"list-unbalanced-close", BYTES("a1 ID a)\r\n"), 0, 0, {ERR(END, "a1", "ID", E_SYNTAX)}},
    {"list-close-first", BYTES("a1 ID )(\r\n"), 0, 0, {ERR(END, "a1", "ID", E_SYNTAX)}},
    {"list-close-extra", BYTES("a1 ID (a))\r\n"), 0, 0, {ERR(END, "a1", "ID", E_SYNTAX)}},
    {"no-space-quoted", BYTES("a1 LOGIN \"a\"\"b\"\r\n"), 0, 0,
     {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"no-space-atom-quoted", BYTES("a1 LOGIN a\"b\"\r\n"), 0, 0,
     {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"no-space-quoted-atom", BYTES("a1 LOGIN \"a\"b\r\n"), 0, 0,
     {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"no-space-atom-list", BYTES("a1 ID a(b)\r\n"), 0, 0, {ERR(END, "a1", "ID", E_SYNTAX)}},
    {"no-space-literal", BYTES("a1 LOGIN {1+}\r\nab\r\n"), 0, 0,
     {ERR(END, "a1", "LOGIN", E_SYNTAX)}},

    /* ---- malformed literal announcements ---- */
    {"literal-junk-after", BYTES("a1 LOGIN {5}x\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"literal-space-after", BYTES("a1 LOGIN {5} \r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"literal-bad-digit", BYTES("a1 LOGIN {5a}\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"literal-no-digits", BYTES("a1 LOGIN {}\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"literal-plus-only", BYTES("a1 LOGIN {+}\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"literal-negative", BYTES("a1 LOGIN {-1}\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"literal-two-plus", BYTES("a1 LOGIN {5++}\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"literal-space-inside", BYTES("a1 LOGIN { 5}\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"literal-unclosed", BYTES("a1 LOGIN {5\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"literal-unclosed-plus", BYTES("a1 LOGIN {5+\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},
    {"literal-bare-cr", BYTES("a1 LOGIN {5}\rx\r\n"), 0, 0, {ERR(END, "a1", "LOGIN", E_SYNTAX)}},

    /* ---- bad lines that end with a literal announcement (RFC 7888 section 3) ---- */
    {"error-literal", BYTES("a1 LOGIN \"\\q\" {3}\r\na2 NOOP\r\n"), 0, 0,
     {ERR(19, "a1", "LOGIN", E_QUOTED), CMD(END, "a2", "NOOP", "")}},
    {"error-literal-plus", BYTES("a1 LOGIN \"\\q\" {3+}\r\nabc\r\n"), 0, 0,
     {FATAL(20, "a1", "LOGIN", E_LITPLUS)}},
    {"error-literal-plus-lf", BYTES("a1 LOGIN \"\\q\" {3+}\nabc\n"), 0, 0,
     {FATAL(19, "a1", "LOGIN", E_LITPLUS)}},
    {"error-tag-literal", BYTES("+ LOGIN {3}\r\na2 NOOP\r\n"), 0, 0,
     {ERR(13, NULL, NULL, E_TAG), CMD(END, "a2", "NOOP", "")}},
    {"error-tag-literal-plus", BYTES("+ LOGIN {3+}\r\nabc\r\n"), 0, 0,
     {FATAL(14, NULL, NULL, E_LITPLUS)}},
    /* the error is found at the "{" itself */
    {"error-at-brace-literal-plus", BYTES("a1 LOGIN abc{3+}\r\nxyz\r\n"), 0, 0,
     {FATAL(18, "a1", "LOGIN", E_LITPLUS)}},
    {"error-tag-brace-literal-plus", BYTES("a{3+}\r\nxyz\r\n"), 0, 0,
     {FATAL(7, NULL, NULL, E_LITPLUS)}},
    {"error-brace-brace-literal-plus", BYTES("a1 LOGIN {{3+}\r\nxyz\r\n"), 0, 0,
     {FATAL(16, "a1", "LOGIN", E_LITPLUS)}},
    {"error-after-literal", BYTES("a1 LOGIN {3}\r\nabc \"\\q\" {3}\r\na2 NOOP\r\n"), 0, 0,
     {CONT(14), ERR(28, "a1", "LOGIN", E_QUOTED), CMD(END, "a2", "NOOP", "")}},
    {"error-after-literal-plus", BYTES("a1 LOGIN {3+}\r\nabc \"\\q\" {3+}\r\nxyz\r\n"), 0, 0,
     {FATAL(30, "a1", "LOGIN", E_LITPLUS)}},
    /* not a literal announcement: something follows the "}" */
    {"error-brace-then-junk", BYTES("a1 LOGIN \"\\q\" {3+}x\r\na2 NOOP\r\n"), 0, 0,
     {ERR(21, "a1", "LOGIN", E_QUOTED), CMD(END, "a2", "NOOP", "")}},
    {"error-brace-then-space", BYTES("a1 LOGIN \"\\q\" {3+} \r\na2 NOOP\r\n"), 0, 0,
     {ERR(21, "a1", "LOGIN", E_QUOTED), CMD(END, "a2", "NOOP", "")}},
    {"error-brace-no-digits", BYTES("a1 LOGIN \"\\q\" {+}\r\na2 NOOP\r\n"), 0, 0,
     {ERR(19, "a1", "LOGIN", E_QUOTED), CMD(END, "a2", "NOOP", "")}},

    /* ---- resynchronisation ---- */
    {"resync-after-error", BYTES("a1 LOGIN \"a\\b\" c\r\na2 LOGIN alice pw\r\n"), 0, 0,
     {ERR(18, "a1", "LOGIN", E_QUOTED), CMD(END, "a2", "LOGIN", "alice pw")}},
    {"resync-after-bad-tag", BYTES("+\r\n\r\n*\na1 NOOP\r\n"), 0, 0,
     {ERR(3, NULL, NULL, E_TAG), ERR(5, NULL, NULL, E_TAG), ERR(7, NULL, NULL, E_TAG),
      CMD(END, "a1", "NOOP", "")}},

    /* ---- small limits ---- */
    {"limit-literal-ok", BYTES("a1 LOGIN {5}\r\nalice pw\r\n"), 0, 5,
     {CONT(14), CMD(END, "a1", "LOGIN", "{5}\"alice\" pw")}},
    {"limit-literal-over", BYTES("a1 LOGIN {6}\r\nalice!pw\r\n"), 0, 5,
     {FATAL(12, "a1", "LOGIN", E_LITERAL)}},
    {"limit-literal-plus-over", BYTES("a1 LOGIN {6+}\r\nalice!pw\r\n"), 0, 5,
     {FATAL(13, "a1", "LOGIN", E_LITERAL)}},
    {"limit-literal-one", BYTES("a1 LOGIN {1}\r\nx {2}\r\nxy\r\n"), 0, 1,
     {CONT(14), FATAL(19, "a1", "LOGIN", E_LITERAL)}},
    {"literal-4294967296", BYTES("a1 LOGIN {4294967296}\r\n"), 0, 0,
     {FATAL(21, "a1", "LOGIN", E_LITERAL)}},
    {"literal-4294967296-plus", BYTES("a1 LOGIN {4294967296+}\r\nxyz\r\n"), 0, 0,
     {FATAL(22, "a1", "LOGIN", E_LITERAL)}},
    {"literal-30-digits", BYTES("a1 LOGIN {123456789012345678901234567890}\r\n"), 0, 0,
     {FATAL(41, "a1", "LOGIN", E_LITERAL)}},
    /* without a limit to stop it, the count itself must not wrap around */
    {"literal-30-digits-no-limit", BYTES("a1 LOGIN {123456789012345678901234567890}\r\n"), 0,
     G_MAXSIZE, {FATAL(41, "a1", "LOGIN", E_LITERAL)}},
    {"literal-2-64-no-limit", BYTES("a1 LOGIN {18446744073709551616}\r\n"), 0, G_MAXSIZE,
     {FATAL(31, "a1", "LOGIN", E_LITERAL)}},
    {"literal-2-64-wraps-to-0", BYTES("a1 LOGIN {36893488147419103232}\r\n"), 0, G_MAXSIZE,
     {FATAL(31, "a1", "LOGIN", E_LITERAL)}},
    {"literal-gsize-max-no-limit", BYTES("a1 LOGIN {18446744073709551615}\r\n"), 0, G_MAXSIZE,
     {FATAL(31, "a1", "LOGIN", E_LITERAL)}},
    {"limit-line-ok", BYTES("a1 LOGIN abc d\r\n"), 16, 0, {CMD(END, "a1", "LOGIN", "abc d")}},
    {"limit-line-over", BYTES("a1 LOGIN abc de\r\n"), 16, 0, {FATAL(17, "a1", "LOGIN", E_LINE)}},
    {"limit-line-lf-ok", BYTES("a1 LOGIN abc de\n"), 16, 0, {CMD(END, "a1", "LOGIN", "abc de")}},
    {"limit-line-lf-over", BYTES("a1 LOGIN abc def\n"), 16, 0, {FATAL(17, "a1", "LOGIN", E_LINE)}},
    {"limit-line-before-cr", BYTES("a1 LOGIN abc def\r\n"), 16, 0,
     {FATAL(17, "a1", "LOGIN", E_LINE)}},
    /* literal contents do not count; announcements and every CRLF do */
    {"limit-line-literal-ok", BYTES("a1 LOGIN {5}\r\nalice x\r\n"), 18, 0,
     {CONT(14), CMD(END, "a1", "LOGIN", "{5}\"alice\" x")}},
    {"limit-line-literal-over", BYTES("a1 LOGIN {5}\r\nalice x\r\n"), 17, 0,
     {CONT(14), FATAL(END, "a1", "LOGIN", E_LINE)}},
    {"limit-line-announcement", BYTES("a1 LOGIN {5}\r\n"), 13, 0,
     {FATAL(END, "a1", "LOGIN", E_LINE)}},
    /* the count starts again with each command */
    {"limit-line-pipelined", BYTES("a1 NOOP\r\na2 NOOP\r\n"), 9, 0,
     {CMD(9, "a1", "NOOP", ""), CMD(END, "a2", "NOOP", "")}},
    {"limit-line-after-error", BYTES("+\r\na1 NOOP\r\n"), 9, 0,
     {ERR(3, NULL, NULL, E_TAG), CMD(END, "a1", "NOOP", "")}},
    /* a bad line being skipped is counted too */
    {"limit-line-error-line", BYTES("a1 LOGIN \"\\q\" abcdef\r\n"), 16, 0,
     {FATAL(17, "a1", "LOGIN", E_LINE)}},
    {"limit-line-in-tag", BYTES("abcdef NOOP\r\n"), 4, 0, {FATAL(5, NULL, NULL, E_LINE)}},
    {"limit-line-in-count", BYTES("a1 X {12345678\r\n"), 10, 0, {FATAL(11, "a1", "X", E_LINE)}},
};
/* clang-format on */

/* An exact-size heap copy of buf[0..len) (NULL for 0 bytes). */
static char *
exact(const char *buf, gsize len)
{
	return g_memdup2(buf, len);
}

/* ---- rendering what the parser returns ---- */

static void
render_bytes(GString *s, const char *v, gsize len, gboolean quoted)
{
	for (gsize i = 0; i < len; i++) {
		guchar c = (guchar)v[i];

		if (quoted && (c == '"' || c == '\\'))
			g_string_append_c(s, '\\');
		if (c >= 0x20 && c < 0x7f)
			g_string_append_c(s, (char)c);
		else
			g_string_append_printf(s, "\\x%02x", c);
	}
}

/* The arguments in the notation of Event.args, checking each token's
 * invariants on the way. */
static char *
render_args(const GPtrArray *args)
{
	GString *s = g_string_new(NULL);

	for (guint i = 0; i < args->len; i++) {
		const GhImapToken *t = g_ptr_array_index(args, i);

		if (i > 0)
			g_string_append_c(s, ' ');
		switch (t->type) {
		case GH_IMAP_TOKEN_ATOM:
			g_assert_nonnull(t->value);
			g_assert_cmpuint(strlen(t->value), ==, t->len);
			g_assert_cmpuint(t->len, >, 0);
			g_assert_false(t->literal);
			render_bytes(s, t->value, t->len, FALSE);
			break;
		case GH_IMAP_TOKEN_STRING:
			g_assert_nonnull(t->value);
			g_assert_cmpint(t->value[t->len], ==, '\0');
			if (t->literal)
				g_string_append_printf(s, "{%zu}", t->len);
			else
				g_assert_cmpuint(strlen(t->value), ==, t->len);
			g_string_append_c(s, '"');
			render_bytes(s, t->value, t->len, TRUE);
			g_string_append_c(s, '"');
			break;
		case GH_IMAP_TOKEN_NIL:
		case GH_IMAP_TOKEN_LIST_START:
		case GH_IMAP_TOKEN_LIST_END:
			g_assert_null(t->value);
			g_assert_cmpuint(t->len, ==, 0);
			g_assert_false(t->literal);
			g_string_append(s, t->type == GH_IMAP_TOKEN_NIL          ? "<NIL>"
					   : t->type == GH_IMAP_TOKEN_LIST_START ? "("
										 : ")");
			break;
		default:
			g_assert_not_reached();
		}
	}
	return g_string_free(s, FALSE);
}

/* ---- feeding ---- */

typedef enum {
	SPLIT_WHOLE,  /* everything at once */
	SPLIT_BYTES,  /* one byte per call */
	SPLIT_RANDOM, /* 1..max_chunk bytes per call */
} Split;

/* What one feed returned, copied out of the command. */
typedef struct {
	GhImapStatus st;
	gsize at;
	char *tag;
	char *name;
	char *args;
	const char *error;
} Got;

static void
got_free(gpointer data)
{
	Got *g = data;

	g_free(g->tag);
	g_free(g->name);
	g_free(g->args);
	g_free(g);
}

static char poison[] = "poison";

static void
poison_command(GhImapCommand *cmd)
{
	cmd->tag = poison;
	cmd->name = poison;
	cmd->args = (GPtrArray *)(void *)poison;
	cmd->error = poison;
}

/* NEED_MORE and CONTINUE leave *out untouched. */
static void
assert_poisoned(const GhImapCommand *cmd)
{
	g_assert_true(cmd->tag == poison);
	g_assert_true(cmd->name == poison);
	g_assert_true(cmd->args == (GPtrArray *)(void *)poison);
	g_assert_true(cmd->error == poison);
}

static void
assert_cleared(const GhImapCommand *cmd)
{
	g_assert_null(cmd->tag);
	g_assert_null(cmd->name);
	g_assert_null(cmd->args);
	g_assert_null(cmd->error);
}

/* After FATAL, every call is FATAL, consumes nothing and holds nothing. */
static void
assert_stays_fatal(GhImapParser *p, const char *error)
{
	static const char more[] = "a9 NOOP\r\n";

	for (gsize n = 0; n <= sizeof more - 1; n += sizeof more - 1) {
		g_autofree char *copy = exact(more, n);
		GhImapCommand cmd;
		gsize used = 12345;

		poison_command(&cmd);
		g_assert_cmpint(gh_imap_parser_feed(p, copy, n, &used, &cmd), ==, GH_IMAP_FATAL);
		g_assert_cmpuint(used, ==, 0);
		g_assert_null(cmd.tag);
		g_assert_null(cmd.name);
		g_assert_null(cmd.args);
		g_assert_cmpstr(cmd.error, ==, error);
		g_assert_false(gh_imap_parser_in_command(p));
		gh_imap_command_clear(&cmd);
		assert_cleared(&cmd);
	}
}

/* Feed in[0..len) as a caller would, in pieces cut by `split`: the bytes
 * the parser did not consume go again in front of the next piece.  Returns
 * the events, and checks on the way what holds for any input: NEED_MORE
 * consumes all, NEED_MORE and CONTINUE leave *out alone, the in-command
 * flag, command invariants, clearing, FATAL for good. */
static GPtrArray *
run(const char *in, gsize len, gsize max_line, gsize max_literal, Split split, gint max_chunk)
{
	GPtrArray *events = g_ptr_array_new_with_free_func(got_free);
	GhImapParser *p = gh_imap_parser_new(max_line, max_literal);
	g_autoptr(GByteArray) pending = g_byte_array_new();
	gsize delivered = 0;
	gsize done = 0;
	gboolean in_command = FALSE;
	gboolean dead = FALSE;

	g_assert_false(gh_imap_parser_in_command(p));
	while (delivered < len && !dead) {
		gsize n = len - delivered;

		if (split == SPLIT_BYTES) {
			n = 1;
		} else if (split == SPLIT_RANDOM) {
			/* (not inside MIN(), which would draw twice) */
			gsize r = (gsize)g_test_rand_int_range(1, max_chunk + 1);

			n = MIN(n, r);
		}
		g_byte_array_append(pending, (const guint8 *)in + delivered, (guint)n);
		delivered += n;

		for (;;) {
			g_autofree char *copy = exact((const char *)pending->data, pending->len);
			GhImapCommand cmd;
			gsize used = 12345;
			GhImapStatus st;
			Got *g;

			poison_command(&cmd);
			st = gh_imap_parser_feed(p, copy, pending->len, &used, &cmd);
			g_assert_cmpuint(used, <=, pending->len);
			g_byte_array_remove_range(pending, 0, (guint)used);
			done += used;
			if (st == GH_IMAP_NEED_MORE) {
				g_assert_cmpuint(pending->len, ==, 0);
				assert_poisoned(&cmd);
				in_command = in_command || used > 0;
				g_assert_cmpint(gh_imap_parser_in_command(p), ==, in_command);
				break;
			}

			/* every event ends at a byte it consumed */
			g_assert_cmpuint(used, >, 0);
			g = g_new0(Got, 1);
			g->st = st;
			g->at = done;
			if (st == GH_IMAP_CONTINUE) {
				assert_poisoned(&cmd);
				in_command = TRUE;
			} else {
				g_assert_cmpint(st, >=, GH_IMAP_COMMAND);
				g_assert_cmpint(st, <=, GH_IMAP_FATAL);
				if (st == GH_IMAP_COMMAND) {
					g_assert_nonnull(cmd.tag);
					g_assert_nonnull(cmd.name);
					g_assert_nonnull(cmd.args);
					g_assert_null(cmd.error);
					g->args = render_args(cmd.args);
				} else {
					g_assert_null(cmd.args);
					g_assert_nonnull(cmd.error);
				}
				if (cmd.name != NULL) {
					g_autofree char *up = g_ascii_strup(cmd.name, -1);

					g_assert_cmpstr(cmd.name, ==, up);
				}
				g->tag = g_strdup(cmd.tag);
				g->name = g_strdup(cmd.name);
				g->error = cmd.error;
				gh_imap_command_clear(&cmd);
				assert_cleared(&cmd);
				gh_imap_command_clear(&cmd);
				in_command = FALSE;
			}
			g_assert_cmpint(gh_imap_parser_in_command(p), ==, in_command);
			g_ptr_array_add(events, g);
			if (st == GH_IMAP_FATAL) {
				assert_stays_fatal(p, g->error);
				dead = TRUE;
				break;
			}
		}
	}
	if (!dead)
		g_assert_cmpuint(done, ==, len);
	gh_imap_parser_free(p);
	return events;
}

static const char *
status_name(GhImapStatus st)
{
	switch (st) {
	case GH_IMAP_NEED_MORE:
		return "NEED_MORE";
	case GH_IMAP_COMMAND:
		return "COMMAND";
	case GH_IMAP_CONTINUE:
		return "CONTINUE";
	case GH_IMAP_ERROR:
		return "ERROR";
	case GH_IMAP_FATAL:
		return "FATAL";
	}
	return "?";
}

static void
assert_events(GPtrArray *got, const Event *want, gsize len)
{
	gsize n = 0;

	while (n < MAX_EVENTS && want[n].st != GH_IMAP_NEED_MORE)
		n++;
	for (guint i = 0; i < got->len; i++) {
		const Got *g = g_ptr_array_index(got, i);

		g_test_message("  got %s at %zu: tag %s name %s args %s error %s",
			       status_name(g->st), g->at, g->tag ? g->tag : "(null)",
			       g->name ? g->name : "(null)", g->args ? g->args : "(null)",
			       g->error ? g->error : "(null)");
	}
	for (gsize i = 0; i < MIN(n, (gsize)got->len); i++) {
		const Got *g = g_ptr_array_index(got, i);
		const Event *w = &want[i];

		g_assert_cmpstr(status_name(g->st), ==, status_name(w->st));
		g_assert_cmpuint(g->at, ==, w->at == END ? len : w->at);
		g_assert_cmpstr(g->tag, ==, w->tag);
		g_assert_cmpstr(g->name, ==, w->name);
		g_assert_cmpstr(g->args, ==, w->args);
		g_assert_cmpstr(g->error, ==, w->error);
	}
	g_assert_cmpuint(got->len, ==, n);
}

/* Whole, byte by byte, and in random pieces small and large: the same
 * events every time. */
static void
check_input(const char *in, gsize len, gsize max_line, gsize max_literal, const Event *want)
{
	static const gint chunks[] = {2, 3, 7, 16, 100, 4096};

	g_test_message("whole");
	{
		g_autoptr(GPtrArray) got = run(in, len, max_line, max_literal, SPLIT_WHOLE, 0);

		assert_events(got, want, len);
	}
	g_test_message("byte by byte");
	{
		g_autoptr(GPtrArray) got = run(in, len, max_line, max_literal, SPLIT_BYTES, 0);

		assert_events(got, want, len);
	}
	for (gsize i = 0; i < G_N_ELEMENTS(chunks); i++) {
		for (int round = 0; round < 3; round++) {
			g_autoptr(GPtrArray) got =
			    run(in, len, max_line, max_literal, SPLIT_RANDOM, chunks[i]);

			g_test_message("random pieces of up to %d bytes, round %d", chunks[i],
				       round);
			assert_events(got, want, len);
		}
	}
}

static void
test_case(gconstpointer data)
{
	const Case *c = data;

	check_input(c->in, c->len, c->max_line != 0 ? c->max_line : MAX_LINE,
		    c->max_literal != 0 ? c->max_literal : MAX_LITERAL, c->want);
}

/* ---- the real limits ---- */

/* "a001 LOGIN alice xxx...x" with its terminator, `total` bytes in all. */
static GString *
padded_login(gsize total, const char *eol)
{
	GString *s = g_string_new("a001 LOGIN alice ");

	while (s->len + strlen(eol) < total)
		g_string_append_c(s, 'x');
	g_string_append(s, eol);
	g_assert_cmpuint(s->len, ==, total);
	return s;
}

/* The expected arguments of padded_login(). */
static char *
padded_args(const GString *s, const char *eol)
{
	gsize start = strlen("a001 LOGIN ");

	return g_strndup(s->str + start, s->len - start - strlen(eol));
}

/* max_line 8192: the line with its terminator may be 8192 bytes, not
 * 8193; the FATAL comes at the 8193rd byte, whatever it is. */
static void
test_line_limit(void)
{
	static const char *const eols[] = {"\r\n", "\n"};

	for (gsize i = 0; i < G_N_ELEMENTS(eols); i++) {
		g_autoptr(GString) ok = padded_login(MAX_LINE, eols[i]);
		g_autoptr(GString) over = padded_login(MAX_LINE + 1, eols[i]);
		g_autofree char *args = padded_args(ok, eols[i]);
		const Event want_ok[MAX_EVENTS] = {CMD(END, "a001", "LOGIN", args)};
		const Event want_over[MAX_EVENTS] = {FATAL(MAX_LINE + 1, "a001", "LOGIN", E_LINE)};

		g_test_message("%zu bytes with %s", ok->len, i == 0 ? "CRLF" : "LF");
		check_input(ok->str, ok->len, MAX_LINE, MAX_LITERAL, want_ok);
		g_test_message("%zu bytes with %s", over->len, i == 0 ? "CRLF" : "LF");
		check_input(over->str, over->len, MAX_LINE, MAX_LITERAL, want_over);
	}

	/* 8192 bytes and no end yet: the CR is one too many */
	{
		g_autoptr(GString) s = padded_login(MAX_LINE + 2, "\r\n");
		const Event want[MAX_EVENTS] = {FATAL(MAX_LINE + 1, "a001", "LOGIN", E_LINE)};

		check_input(s->str, s->len, MAX_LINE, MAX_LITERAL, want);
	}

	/* a literal's contents do not count, its announcement does */
	for (gsize extra = 0; extra <= 1; extra++) {
		static const char head[] = "a001 LOGIN {100}\r\n";
		g_autoptr(GString) s = g_string_new(head);
		g_autoptr(GString) args = g_string_new("{100}\"");
		gsize counted = strlen(head);
		Event want[MAX_EVENTS] = {CONT(strlen(head))};

		for (int k = 0; k < 100; k++)
			g_string_append_c(s, 'L');
		g_string_append_len(args, s->str + strlen(head), 100);
		g_string_append(args, "\" ");
		g_string_append_c(s, ' ');
		counted++;
		while (counted + 2 < MAX_LINE + extra) {
			g_string_append_c(s, 'y');
			g_string_append_c(args, 'y');
			counted++;
		}
		g_string_append(s, "\r\n");
		g_assert_cmpuint(s->len, ==, MAX_LINE + extra + 100);
		if (extra == 0)
			want[1] = (Event)CMD(END, "a001", "LOGIN", args->str);
		else
			want[1] = (Event)FATAL(END, "a001", "LOGIN", E_LINE);
		g_test_message("literal and %zu counted bytes", MAX_LINE + extra);
		check_input(s->str, s->len, MAX_LINE, MAX_LITERAL, want);
	}

	/* a line at the limit, then the next command: the count restarts */
	{
		g_autoptr(GString) s = padded_login(MAX_LINE, "\r\n");
		g_autofree char *args = padded_args(s, "\r\n");
		const Event want[MAX_EVENTS] = {CMD(MAX_LINE, "a001", "LOGIN", args),
						CMD(END, "a002", "NOOP", "")};

		g_string_append(s, "a002 NOOP\r\n");
		check_input(s->str, s->len, MAX_LINE, MAX_LITERAL, want);
	}

	/* a bad line is skipped only up to the limit */
	{
		g_autoptr(GString) s = g_string_new("a001 LOGIN \"\\q\" ");
		const Event want[MAX_EVENTS] = {FATAL(MAX_LINE + 1, "a001", "LOGIN", E_LINE)};

		while (s->len < 2 * MAX_LINE)
			g_string_append_c(s, 'z');
		g_string_append(s, "\r\n");
		check_input(s->str, s->len, MAX_LINE, MAX_LITERAL, want);
	}
}

/* A 1 MB line: FATAL after max_line + 1 bytes, never waiting for its end,
 * whether it is an argument, a tag, a bad line or a literal's count. */
static void
test_huge_line(void)
{
	static const struct {
		const char *head;
		const char *tag;
		const char *name;
		char fill;
	} lines[] = {
	    /* an argument */
	    {"a001 LOGIN alice ", "a001", "LOGIN", 'A'},
	    /* a tag (bad after 64 bytes, then skipped) */
	    {"", NULL, NULL, 'A'},
	    /* a quoted string */
	    {"a001 LOGIN \"", "a001", "LOGIN", 'q'},
	    /* a bad line being skipped */
	    {"a001 LOGIN \"\\x", "a001", "LOGIN", ' '},
	    /* a literal's octet count */
	    {"a001 LOGIN {", "a001", "LOGIN", '9'},
	};
	const gsize n = 1024 * 1024;

	for (gsize i = 0; i < G_N_ELEMENTS(lines); i++) {
		g_autoptr(GString) s = g_string_new(lines[i].head);
		const Event want[MAX_EVENTS] = {
		    FATAL(MAX_LINE + 1, lines[i].tag, lines[i].name, E_LINE)};

		while (s->len < n)
			g_string_append_c(s, lines[i].fill);
		g_string_append(s, "\r\n");
		g_test_message("1 MB line starting \"%s\"", lines[i].head);
		check_input(s->str, s->len, MAX_LINE, MAX_LITERAL, want);
	}
}

/* max_literal 8192: {8192} and {8192+} are read, {8193} and {8193+} are
 * FATAL at their "}", before anything is allocated for them. */
static void
test_literal_limit(void)
{
	for (gsize plus = 0; plus <= 1; plus++) {
		g_autofree char *head =
		    g_strdup_printf("a1 LOGIN alice {%d%s}\r\n", MAX_LITERAL, plus ? "+" : "");
		g_autoptr(GString) s = g_string_new(head);
		g_autoptr(GString) args = g_string_new(NULL);
		Event want[MAX_EVENTS] = {{0}};

		/* a password of every byte value, CR LF and NUL among them */
		for (gsize k = 0; k < MAX_LITERAL; k++)
			g_string_append_c(s, (char)(k % 256));
		g_string_append(s, "\r\n");
		g_string_append_printf(args, "alice {%d}\"", MAX_LITERAL);
		render_bytes(args, s->str + strlen(head), MAX_LITERAL, TRUE);
		g_string_append_c(args, '"');
		if (plus) {
			want[0] = (Event)CMD(END, "a1", "LOGIN", args->str);
		} else {
			want[0] = (Event)CONT(strlen(head));
			want[1] = (Event)CMD(END, "a1", "LOGIN", args->str);
		}
		g_test_message("%s", head);
		check_input(s->str, s->len, MAX_LINE, MAX_LITERAL, want);
	}

	for (gsize plus = 0; plus <= 1; plus++) {
		g_autofree char *head =
		    g_strdup_printf("a1 LOGIN alice {%d%s}", MAX_LITERAL + 1, plus ? "+" : "");
		g_autoptr(GString) s = g_string_new(head);
		const Event want[MAX_EVENTS] = {FATAL(strlen(head), "a1", "LOGIN", E_LITERAL)};

		g_string_append(s, "\r\n");
		for (gsize k = 0; k <= MAX_LITERAL; k++)
			g_string_append_c(s, 'z');
		g_string_append(s, "\r\n");
		g_test_message("%s", head);
		check_input(s->str, s->len, MAX_LINE, MAX_LITERAL, want);
	}

	/* the limit is for a command's literals together: two halves fit, a
	 * second literal one octet over the rest does not (else one command
	 * could make the parser hold max_line / 5 buffers of max_literal) */
	for (gsize plus = 0; plus <= 1; plus++) {
		g_autofree char *head =
		    g_strdup_printf("a1 LOGIN {%d+}\r\n%s {%d%s}", MAX_LITERAL / 2, "",
				    MAX_LITERAL / 2 + 1, plus ? "+" : "");
		g_autoptr(GString) s = g_string_new(NULL);
		g_autofree char *first = g_strdup_printf("a1 LOGIN {%d+}\r\n", MAX_LITERAL / 2);
		g_autofree char *second =
		    g_strdup_printf(" {%d%s}", MAX_LITERAL / 2 + 1, plus ? "+" : "");
		Event want[MAX_EVENTS] = {{0}};

		g_string_append(s, first);
		for (gsize k = 0; k < MAX_LITERAL / 2; k++)
			g_string_append_c(s, 'y');
		g_string_append(s, second);
		want[0] = (Event)FATAL(s->len, "a1", "LOGIN", E_LITERAL);
		g_string_append(s, "\r\n");
		for (gsize k = 0; k <= MAX_LITERAL / 2; k++)
			g_string_append_c(s, 'z');
		g_string_append(s, "\r\n");
		g_test_message("%s", head);
		check_input(s->str, s->len, MAX_LINE, MAX_LITERAL, want);
	}
}

/* ---- the in-command flag, freeing, clearing ---- */

static GhImapStatus
feed_str(GhImapParser *p, const char *s, gsize *used, GhImapCommand *cmd)
{
	g_autofree char *copy = exact(s, strlen(s));

	return gh_imap_parser_feed(p, copy, strlen(s), used, cmd);
}

static void
test_in_command(void)
{
	GhImapParser *p = gh_imap_parser_new(MAX_LINE, MAX_LITERAL);
	GhImapCommand cmd = {NULL, NULL, NULL, NULL};
	gsize used = 0;

	g_assert_false(gh_imap_parser_in_command(p));
	/* nothing fed */
	g_assert_cmpint(gh_imap_parser_feed(p, NULL, 0, &used, &cmd), ==, GH_IMAP_NEED_MORE);
	g_assert_cmpuint(used, ==, 0);
	assert_cleared(&cmd);
	g_assert_false(gh_imap_parser_in_command(p));

	/* a CR alone is already part of a line */
	g_assert_cmpint(feed_str(p, "\r", &used, &cmd), ==, GH_IMAP_NEED_MORE);
	g_assert_true(gh_imap_parser_in_command(p));
	g_assert_cmpint(feed_str(p, "\n", &used, &cmd), ==, GH_IMAP_ERROR);
	g_assert_false(gh_imap_parser_in_command(p));
	gh_imap_command_clear(&cmd);

	g_assert_cmpint(feed_str(p, "a1 LOG", &used, &cmd), ==, GH_IMAP_NEED_MORE);
	g_assert_cmpuint(used, ==, 6);
	g_assert_true(gh_imap_parser_in_command(p));
	/* across the continuation the command stays open */
	g_assert_cmpint(feed_str(p, "IN {5}\r\nalice", &used, &cmd), ==, GH_IMAP_CONTINUE);
	g_assert_cmpuint(used, ==, 8);
	g_assert_true(gh_imap_parser_in_command(p));
	g_assert_cmpint(feed_str(p, "alice", &used, &cmd), ==, GH_IMAP_NEED_MORE);
	g_assert_true(gh_imap_parser_in_command(p));
	g_assert_cmpint(feed_str(p, " pw\r\na2", &used, &cmd), ==, GH_IMAP_COMMAND);
	g_assert_cmpuint(used, ==, 5);
	g_assert_false(gh_imap_parser_in_command(p));
	g_assert_cmpstr(cmd.tag, ==, "a1");
	g_assert_cmpstr(cmd.name, ==, "LOGIN");
	g_assert_cmpuint(cmd.args->len, ==, 2);
	gh_imap_command_clear(&cmd);

	/* skipping a bad line is still inside it */
	g_assert_cmpint(feed_str(p, "a2 \"\\x", &used, &cmd), ==, GH_IMAP_NEED_MORE);
	g_assert_true(gh_imap_parser_in_command(p));
	g_assert_cmpint(feed_str(p, "\r\n", &used, &cmd), ==, GH_IMAP_ERROR);
	g_assert_false(gh_imap_parser_in_command(p));
	gh_imap_command_clear(&cmd);

	/* FATAL holds nothing */
	g_assert_cmpint(feed_str(p, "a3 X {99999}", &used, &cmd), ==, GH_IMAP_FATAL);
	g_assert_false(gh_imap_parser_in_command(p));
	gh_imap_command_clear(&cmd);
	gh_imap_parser_free(p);
}

/* Free a parser after every prefix of an input that passes through every
 * state (tag, name, atoms, quoted password, lists, literals of both kinds,
 * a bad line being skipped, FATAL): valgrind finds what is left behind. */
static void
test_free_partial(void)
{
	static const char in[] = "a1 LOGIN {5}\r\nalice \"pass\\\"word\" (x {2+}\r\nab NIL)\r\n"
				 "a2 LOGIN \"x\\q\" {3}\r\n"
				 "a3 ID (\"name\" \"mutt\")\r\n"
				 "a4 LOGIN {99999}\r\n";
	const gsize len = sizeof in - 1;

	for (gsize k = 0; k <= len; k++) {
		GhImapParser *p = gh_imap_parser_new(MAX_LINE, MAX_LITERAL);
		gsize off = 0;

		while (off < k) {
			g_autofree char *copy = exact(in + off, k - off);
			GhImapCommand cmd;
			gsize used = 0;
			GhImapStatus st = gh_imap_parser_feed(p, copy, k - off, &used, &cmd);

			off += used;
			if (st == GH_IMAP_COMMAND || st == GH_IMAP_ERROR || st == GH_IMAP_FATAL)
				gh_imap_command_clear(&cmd);
			if (st == GH_IMAP_FATAL || st == GH_IMAP_NEED_MORE)
				break;
		}
		gh_imap_parser_free(p);
	}
	gh_imap_parser_free(NULL);
}

static void
test_command_clear(void)
{
	GhImapParser *p = gh_imap_parser_new(MAX_LINE, MAX_LITERAL);
	GhImapCommand cmd = {NULL, NULL, NULL, NULL};
	gsize used = 0;

	/* a zeroed command, twice, and NULL */
	gh_imap_command_clear(&cmd);
	gh_imap_command_clear(&cmd);
	assert_cleared(&cmd);
	gh_imap_command_clear(NULL);

	g_assert_cmpint(feed_str(p, "a1 LOGIN {3+}\r\nbob \"s3cr\\\\t\" (NIL ())\r\n", &used, &cmd),
			==, GH_IMAP_COMMAND);
	g_assert_cmpuint(cmd.args->len, ==, 7); /* bob "s3cr\\t" ( NIL ( ) ) */
	gh_imap_command_clear(&cmd);
	assert_cleared(&cmd);
	gh_imap_command_clear(&cmd);
	assert_cleared(&cmd);

	/* a command without arguments has an empty array, not NULL */
	g_assert_cmpint(feed_str(p, "a2 NOOP\r\n", &used, &cmd), ==, GH_IMAP_COMMAND);
	g_assert_nonnull(cmd.args);
	g_assert_cmpuint(cmd.args->len, ==, 0);
	gh_imap_command_clear(&cmd);
	assert_cleared(&cmd);

	/* ERROR: tag and name to free, no arguments */
	g_assert_cmpint(feed_str(p, "a3 LOGIN bob (\r\n", &used, &cmd), ==, GH_IMAP_ERROR);
	g_assert_cmpstr(cmd.tag, ==, "a3");
	g_assert_cmpstr(cmd.name, ==, "LOGIN");
	g_assert_null(cmd.args);
	gh_imap_command_clear(&cmd);
	assert_cleared(&cmd);

	/* FATAL */
	g_assert_cmpint(feed_str(p, "a4 LOGIN {8193}", &used, &cmd), ==, GH_IMAP_FATAL);
	g_assert_cmpstr(cmd.tag, ==, "a4");
	g_assert_cmpstr(cmd.error, ==, E_LITERAL);
	gh_imap_command_clear(&cmd);
	assert_cleared(&cmd);
	gh_imap_parser_free(p);
}

/* ---- gh_imap_resp_code_is ---- */

static void
test_resp_code(void)
{
	static const struct {
		const char *text; /* what follows "tag NO " */
		gsize len;        /* 0: strlen */
		const char *code;
		gboolean is;
	} codes[] = {
	    {"[LIMIT] Maximum number of connections", 0, "LIMIT", TRUE},
	    {"[LIMIT]", 0, "LIMIT", TRUE},
	    {"[limit] too many", 0, "LIMIT", TRUE},
	    {"[BADCHARSET (UTF-8)] no", 0, "BADCHARSET", TRUE},
	    {"[LIMITS] other", 0, "LIMIT", FALSE},
	    {"[LIMIT", 0, "LIMIT", FALSE},
	    {"[LIM] x", 0, "LIMIT", FALSE},
	    {"LIMIT reached", 0, "LIMIT", FALSE},
	    {" [LIMIT] x", 0, "LIMIT", FALSE},
	    {"[]", 0, "LIMIT", FALSE},
	    {"", 0, "LIMIT", FALSE},
	    {"[UNAVAILABLE] Temporary authentication failure.", 0, "UNAVAILABLE", TRUE},
	    {"[AUTHENTICATIONFAILED] Authentication failed.", 0, "UNAVAILABLE", FALSE},
	    /* the length counts, not a NUL: "[LIMIT]" cut before its ']' */
	    {"[LIMIT] x", 6, "LIMIT", FALSE},
	    {"[LIMIT] x", 7, "LIMIT", TRUE},
	};

	for (gsize i = 0; i < G_N_ELEMENTS(codes); i++) {
		gsize len = codes[i].len != 0 ? codes[i].len : strlen(codes[i].text);
		g_test_message("resp-code case %zu", i);
		g_assert_cmpint(gh_imap_resp_code_is(codes[i].text, len, codes[i].code), ==,
				codes[i].is);
	}
}

/* ---- gh_imap_quote ---- */

static void
test_quote(void)
{
	static const struct {
		const char *in;
		const char *out;
	} quotes[] = {
	    {"alice", "\"alice\""},
	    {"", "\"\""},
	    {"a b", "\"a b\""},
	    {"a\"b", "\"a\\\"b\""},
	    {"a\\b", "\"a\\\\b\""},
	    {"\"\\", "\"\\\"\\\\\""},
	    {"\\\"", "\"\\\\\\\"\""},
	    {"(a) {3} %*", "\"(a) {3} %*\""},
	    {"tab\there", "\"tab\there\""},
	    {"j\xc3\xb6rg", "\"j\xc3\xb6rg\""},
	    {"a\rb", NULL},
	    {"a\nb", NULL},
	    {"\r\n", NULL},
	    {"line\r\n", NULL},
	};

	g_assert_null(gh_imap_quote(NULL));
	for (gsize i = 0; i < G_N_ELEMENTS(quotes); i++) {
		g_autofree char *got = gh_imap_quote(quotes[i].in);

		g_test_message("quote case %zu", i);
		g_assert_cmpstr(got, ==, quotes[i].out);
		if (got == NULL)
			continue;

		/* and the parser reads it back as it was */
		{
			g_autofree char *line = g_strdup_printf("a1 LOGIN %s x\r\n", got);
			GhImapParser *p = gh_imap_parser_new(MAX_LINE, MAX_LITERAL);
			GhImapCommand cmd = {NULL, NULL, NULL, NULL};
			gsize used = 0;
			const GhImapToken *t;

			g_assert_cmpint(feed_str(p, line, &used, &cmd), ==, GH_IMAP_COMMAND);
			g_assert_cmpuint(cmd.args->len, ==, 2);
			t = g_ptr_array_index(cmd.args, 0);
			g_assert_cmpint(t->type, ==, GH_IMAP_TOKEN_STRING);
			g_assert_false(t->literal);
			g_assert_cmpstr(t->value, ==, quotes[i].in);
			gh_imap_command_clear(&cmd);
			gh_imap_parser_free(p);
		}
	}
}

int
main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *path = g_strconcat("/gatehouse/imap-parser/", cases[i].path, NULL);

		g_test_add_data_func(path, &cases[i], test_case);
	}
	g_test_add_func("/gatehouse/imap-parser/line-limit-8k", test_line_limit);
	g_test_add_func("/gatehouse/imap-parser/huge-line", test_huge_line);
	g_test_add_func("/gatehouse/imap-parser/literal-limit-8k", test_literal_limit);
	g_test_add_func("/gatehouse/imap-parser/in-command", test_in_command);
	g_test_add_func("/gatehouse/imap-parser/free-partial", test_free_partial);
	g_test_add_func("/gatehouse/imap-parser/command-clear", test_command_clear);
	g_test_add_func("/gatehouse/imap-parser/quote", test_quote);
	g_test_add_func("/gatehouse/imap-parser/resp-code", test_resp_code);
	return g_test_run();
}
