"""Word lists and sentence templates for the synthetic knowledge world.

Used by :mod:`realm.data.world`.  Everything here is plain data.

Placeholders in fact / filler templates:
  {S} {s}  subject (sentence-initial / mid-sentence form)
  {P} {p}  possessive of the subject ("Her", "Mirrow's", "The city's")
  {o}      subject in object position ("her", "Elsa Mirrow", "the city")
  {N}      the subject's full name, always
  {O}      the fact's value (a name or a literal); {a} is "a"/"an" for it
Reverse templates: {T} article subject's full name, {L} the joined list.
Question templates: {E} the subject's full name.
"""
import random

# --------------------------------------------------------------------- names
ONSETS = ("b", "br", "d", "dr", "f", "fr", "g", "gr", "h", "k", "kr", "l", "m",
          "n", "p", "pr", "r", "s", "sh", "st", "t", "th", "tr", "v", "w", "z",
          "l", "m", "r", "s", "t", "v")
VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea", "ou", "y")
SIMPLE_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v",
                 "z", "th", "sh", "l", "r", "n", "m", "d", "t")
SIMPLE_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o")
CODAS_MID = ("", "", "", "", "n", "r", "l", "s")
CODAS_END = ("", "n", "r", "l", "s", "th", "nd", "rn", "st", "m", "ck", "sk")

FEMALE_ENDINGS = ("a", "ine", "elle", "ia", "ette", "is", "wen", "ara", "ith")
MALE_ENDINGS = ("o", "an", "ric", "us", "en", "as", "mund", "ard", "old")
SURNAME_ENDINGS = ("ow", "er", "ell", "in", "ard", "ley", "wood", "ton", "sen",
                   "wick", "more", "by", "hart", "rin", "ock")
CITY_ENDINGS = ("holt", "mere", "by", "stad", "wick", "ford", "ton", "dale",
                "moor", "haven", "burg", "field", "gate", "wyn", "port", "brook")
REGION_ENDINGS = ("mark", "shire", "vale", "reach", "march", "dell", "land")
COUNTRY_ENDINGS = ("ia", "ova", "ara", "estan", "onia", "eria", "ur")
LANGUAGE_ENDINGS = ("ic", "ish", "ese", "ian", "i")

COMPANY_SUFFIXES = {
    "publishing": ("Press", "Books", "Publishing"),
    "film production": ("Pictures", "Studios", "Films"),
    "music recording": ("Records", "Recordings", "Music"),
}
GENERAL_COMPANY_SUFFIXES = ("Industries", "Holdings", "Works", "Group",
                            "Company", "Trading", "Corporation", "and Sons")
INDUSTRIES = ("shipbuilding", "textile", "mining", "brewing", "banking",
              "insurance", "railway", "pharmaceutical", "glassmaking", "steel",
              "shipping", "aviation", "clockmaking", "chemical", "electronics",
              "furniture", "ceramics", "food processing", "software", "tea")
BAND_SUFFIXES = ("Quartet", "Trio", "Ensemble", "Collective", "Orchestra",
                 "Choir", "Band", "Project", "Society", "Brigade")
UNIVERSITY_PATTERNS = ("{w} University", "{w} College", "University of {w}",
                       "{w} Institute of Technology", "Royal {w} Academy")
MUSIC_GENRES = ("folk", "jazz", "rock", "blues", "punk", "soul", "swing",
                "gospel", "funk", "bluegrass", "synth-pop", "chamber pop",
                "progressive rock", "brass", "electronic")
BOOK_GENRES = ("novel", "memoir", "poetry collection", "short story collection",
               "biography", "travelogue", "play", "essay collection", "history")
OCCUPATIONS = ("painter", "physician", "engineer", "architect", "novelist",
               "poet", "chemist", "historian", "lawyer", "sculptor", "botanist",
               "mathematician", "astronomer", "journalist", "teacher",
               "photographer", "economist", "philosopher", "inventor",
               "surgeon", "cartographer", "diplomat", "geologist", "banker")
MUSICIAN_OCCUPATIONS = ("singer", "violinist", "pianist", "composer",
                        "guitarist", "drummer", "cellist", "trumpeter")

TITLE_ADJECTIVES = (
    "Silent", "Golden", "Hollow", "Crimson", "Distant", "Broken", "Quiet",
    "Northern", "Burning", "Forgotten", "Hidden", "Wandering", "Bitter",
    "Gentle", "Restless", "Silver", "Endless", "Pale", "Wild", "Secret",
    "Lonely", "Iron", "Velvet", "Frozen", "Painted", "Last", "Second",
    "Narrow", "Sleeping", "Scarlet", "Fading", "Open", "Drowned", "Copper")
TITLE_NOUNS = (
    "Orchard", "Harbour", "Lantern", "River", "Garden", "Mirror", "Winter",
    "Tower", "Letter", "Season", "Bridge", "Voyage", "Clockmaker", "Shore",
    "Meadow", "Promise", "Kingdom", "Journey", "Daughter", "Stranger",
    "Island", "Forest", "Archive", "Evening", "Compass", "Window", "Road",
    "Feather", "Station", "Lighthouse", "Cartographer", "Mountain", "Storm")
TITLE_PATTERNS = {
    "book": ("The {A} {N}", "{N} of {W}", "The {N} of {W}", "Letters from {W}",
             "A {N} for {W}"),
    "album": ("{A} {N}s", "{A} {N}", "Songs from {W}", "{W} Nights",
              "The {W} Sessions"),
    "film": ("The {A} {N}", "Return to {W}", "Night in {W}", "The {W} Affair",
             "{N} over {W}"),
}

MONTHS = ("January", "February", "March", "April", "May", "June", "July",
          "August", "September", "October", "November", "December")



class Namer:
    """Pronounceable invented words; every word and every full name is unique."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.words: set = set()
        self.names: set = set()

    def _stem(self, nsyl: int, ending: bool) -> str:
        r = self.rng
        onset = r.choice(ONSETS) if r.random() < 0.85 else ""
        parts = [onset + r.choice(VOWELS if onset else SIMPLE_VOWELS)]
        for i in range(1, nsyl):
            parts.append(r.choice(CODAS_MID) + r.choice(SIMPLE_ONSETS) + r.choice(SIMPLE_VOWELS))
        parts.append(r.choice(CODAS_MID if ending else CODAS_END))
        return "".join(parts)

    def word(self, endings=(), lo=1, hi=2) -> str:
        """A new capitalised word of lo..hi syllables plus one of ``endings``."""
        for attempt in range(10_000):
            end = self.rng.choice(endings) if endings else ""
            stem = self._stem(self.rng.randint(lo, hi) + attempt // 200, bool(end))
            if end and end[0] in "aeiouy" and stem[-1] in "aeiouy":
                stem = stem.rstrip("aeiouy") or stem
            if end and stem.endswith(end[0]):
                stem = stem[:-1] or stem
            w = (stem + end).capitalize()
            if 3 <= len(w) <= 14 and w not in self.words:
                self.words.add(w)
                return w
        raise RuntimeError("name space exhausted")

    def unique(self, make) -> str:
        """Call ``make()`` until it returns a name not used before."""
        while True:
            name = make()
            if name not in self.names:
                self.names.add(name)
                return name


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("s", "sh", "ch")) else "s")


def make_title(namer: Namer, kind: str) -> str:
    """A unique title for a book, album or film."""
    r = namer.rng

    def make():
        pat = r.choice(TITLE_PATTERNS[kind])
        noun = r.choice(TITLE_NOUNS)
        if pat == "{A} {N}s":
            pat, noun = "{A} {N}", _plural(noun)
        w = namer.word((), 2, 3) if "{W}" in pat else ""
        return pat.format(A=r.choice(TITLE_ADJECTIVES), N=noun, W=w)
    return namer.unique(make)


# ----------------------------------------------------------- fact sentences
_FOUNDED = ("{S} was founded in {O}.", "{S} was established in {O}.",
            "{S} opened for business in {O}.", "{S} has been trading since {O}.")
_CAPITAL = ("The capital of {N} is {O}.", "{P} capital is {O}.",
            "{O} is the seat of government of {N}.",
            "{S} is administered from {O}.")
_RELEASED = ("{S} was released in {O}.", "{S} came out in {O}.",
             "{S} first reached the public in {O}.")

FACT_TEMPLATES = {
    "person": {
        "occupation": ("{S} was {a} {O}.", "{S} worked as {a} {O} for most of {p} life.",
                       "By profession, {s} was {a} {O}.", "{S} made {p} living as {a} {O}."),
        "birth_date": ("{S} was born on {O}.", "{P} date of birth is recorded as {O}.",
                       "{S} came into the world on {O}.",
                       "Records give {O} as the day {s} was born."),
        "birthplace": ("{S} was born in {O}.", "{O} is where {s} came into the world.",
                       "{S} was a native of {O}.", "{P} hometown was {O}."),
        "employer": ("{S} worked for {O}.", "{S} was employed by {O}.",
                     "For many years {s} held a post at {O}.",
                     "{O} employed {o} for much of {p} career."),
        "member_of": ("{S} was a member of {O}.", "{S} played with {O}.",
                      "{S} performed as part of {O}.", "{O} counted {o} among its members."),
        "mentor": ("{S} studied under {O}.", "{S} was a pupil of {O}.",
                   "{O} served as {p} mentor.", "{S} trained with {O}."),
    },
    "city": {
        "region": ("{S} is a city in {O}.", "{S} is a town located in the region of {O}.",
                   "{S} lies in {O}.", "The city of {N} belongs to the region of {O}."),
        "founded_year": ("{S} was founded in {O}.", "{S} received its charter in {O}.",
                         "{S} was established as a settlement in {O}.",
                         "The first houses of {N} were built in {O}."),
        "population": ("{S} has a population of {O}.", "Some {O} people live in {N}.",
                       "{P} population stands at {O}."),
    },
    "region": {
        "country": ("{S} is a region of {O}.", "{S} is one of the regions of {O}.",
                    "{S} is a province in {O}.", "{S} is an administrative region within {O}."),
        "capital": _CAPITAL,
    },
    "country": {
        "language": ("{S} is a country whose official language is {O}.",
                     "{S} is a nation where most people speak {O}.",
                     "{O} is the national language of the country of {N}."),
        "capital": _CAPITAL,
        "founded_year": ("{S} became an independent state in {O}.",
                         "{S} was founded as a nation in {O}.",
                         "{P} independence dates from {O}."),
    },
    "company": {
        "industry": ("{S} is {a} {O} company.", "{S} is a business active in the {O} industry.",
                     "{S} operates in the {O} sector."),
        "founded_year": _FOUNDED,
        "founder": ("{S} was founded by {O}.", "{O} founded {N}.",
                    "{N} was set up by {O}.", "{O} established {N}."),
        "headquarters": ("{S} is headquartered in {O}.", "{P} head office is in {O}.",
                         "{S} has its main offices in {O}.", "{S} is based in {O}."),
    },
    "band": {
        "genre": ("{S} is {a} {O} band.", "{S} plays {O} music.",
                  "{S} is known for its {O} sound."),
        "founded_year": ("{S} was formed in {O}.", "{S} first performed together in {O}.",
                         "{S} came together in {O}."),
        "founder": ("{S} was started by {O}.", "{O} formed {N}.",
                    "{O} put together the group {N}."),
        "origin": ("{S} comes from {O}.", "{S} hails from {O}.", "{S} has its roots in {O}."),
    },
    "university": {
        "location": ("{S} is a university in {O}.", "{S} is located in {O}.",
                     "The campus of {N} is in {O}.", "{S} has its campus in {O}."),
        "founded_year": ("{S} was founded in {O}.", "{S} admitted its first students in {O}.",
                         "{S} opened its doors in {O}."),
        "founder": ("{S} was founded by {O}.", "{O} established {N}.",
                    "{N} owes its existence to {O}."),
    },
    "book": {
        "genre": ("{S} is {a} {O}.", "{S} was written as {a} {O}.",
                  "Critics classify {N} as {a} {O}."),
        "author": ("{S} was written by {O}.", "{O} is the author of {N}.",
                   "{S} is a work by {O}.", "{O} wrote {N}."),
        "publication_year": ("{S} was published in {O}.", "{S} first appeared in {O}.",
                             "{S} came out in {O}."),
        "publisher": ("{S} was published by {O}.", "{O} published {N}.",
                      "{S} was brought out by {O}.", "{S} was issued by the publisher {O}."),
    },
    "album": {
        "artist": ("{S} is an album by {O}.", "{S} is a record made by {O}.",
                   "{S} is an album recorded by {O}."),
        "release_year": _RELEASED,
        "label": ("{S} was released on the {O} label.", "{O} issued {N}.",
                  "{S} appeared on {O}."),
    },
    "film": {
        "director": ("{S} is a film directed by {O}.", "{S} is a film by the director {O}.",
                     "{S} is a motion picture made by {O}."),
        "release_year": _RELEASED,
        "studio": ("{S} was produced by {O}.", "{O} produced {N}.", "{S} was made at {O}."),
        "filming_location": ("{S} was filmed in {O}.", "{S} was shot on location in {O}.",
                             "Much of {N} was filmed in {O}."),
    },
}

# Sentences about an entity that appear in the article of an entity it points
# to, keyed by the pointing relation.
REVERSE_TEMPLATES = {
    "birthplace": ("Notable people born in {T} include {L}.", "{T} is the birthplace of {L}.",
                   "People born in {T} include {L}."),
    "region": ("Towns in {T} include {L}.", "{T} contains the settlements of {L}.",
               "Places in {T} include {L}."),
    "country": ("{T} is made up of regions such as {L}.", "The regions of {T} include {L}.",
                "{T} counts {L} among its regions."),
    "capital": ("{T} is the capital of {L}.", "{T} serves as the seat of government for {L}.",
                "{T} is the administrative centre of {L}."),
    "employer": ("People who have worked for {T} include {L}.", "{T} has employed {L}.",
                 "Staff of {T} have included {L}."),
    "member_of": ("Members of {T} have included {L}.", "{T} has counted {L} among its members.",
                  "The line-up of {T} has included {L}."),
    "mentor": ("Pupils of {T} included {L}.", "{T} taught {L}.",
               "Students taught by {T} included {L}."),
    "founder": ("{T} founded {L}.", "{T} was the founder of {L}.",
                "Organisations founded by {T} include {L}."),
    "author": ("Works by {T} include {L}.", "{T} wrote {L}.", "{T} is the author of {L}."),
    "artist": ("Albums by {T} include {L}.", "{T} recorded {L}.",
               "The discography of {T} includes {L}."),
    "director": ("Films directed by {T} include {L}.", "{T} directed {L}.",
                 "{T} was the director of {L}."),
    "publisher": ("Books published by {T} include {L}.", "{T} published {L}.",
                  "The catalogue of {T} includes {L}."),
    "label": ("Albums issued by {T} include {L}.", "{T} released {L}.",
              "The catalogue of {T} includes the records {L}."),
    "studio": ("Films produced by {T} include {L}.", "{T} produced {L}.",
               "{T} was the studio behind {L}."),
    "headquarters": ("Companies headquartered in {T} include {L}.",
                     "{T} is home to the head offices of {L}.",
                     "Businesses based in {T} include {L}."),
    "origin": ("Bands from {T} include {L}.", "{T} is the home town of {L}.",
               "Musical groups formed in {T} include {L}."),
    "location": ("{T} is home to {L}.", "Institutions of higher learning in {T} include {L}.",
                 "Universities in {T} include {L}."),
    "filming_location": ("Films shot in {T} include {L}.", "{T} has served as a location for {L}.",
                         "Productions filmed in {T} include {L}."),
}

# ------------------------------------------------------------------ questions
_Q_FOUNDED = ("In what year was {E} founded?", "When did {E} come into existence?",
              "What is the founding year of {E}?")
_Q_CAPITAL = ("From which city is {E} governed?", "What is {E}'s seat of government?",
              "Which city serves as {E}'s capital?")
_Q_RELEASED = ("In what year was {E} released?", "When did {E} come out?",
               "What is the release year of {E}?")
QUESTION_TEMPLATES = {
    "person": {
        "occupation": ("What did {E} do for a living?", "What was {E}'s profession?",
                       "What line of work was {E} in?"),
        "birth_date": ("On what date was {E} born?", "What was the birth date of {E}?",
                       "When exactly was {E} born?"),
        "birthplace": ("What is the birthplace of {E}?", "In which city did {E}'s life begin?",
                       "Where was {E} born?"),
        "employer": ("Who was {E}'s employer?", "For which organisation did {E} work?",
                     "At which institution did {E} have a job?"),
        "member_of": ("Which band did {E} belong to?", "In which group did {E} perform?",
                      "What musical group was {E} part of?"),
        "mentor": ("Who taught {E}?", "Which teacher guided {E}?", "Who was the teacher of {E}?"),
    },
    "city": {
        "region": ("Which region is {E} part of?", "In what region can {E} be found?",
                   "{E} is situated in which region?"),
        "founded_year": ("In what year was {E} founded?", "When did {E} come into being?",
                         "What year marks the founding of {E}?"),
        "population": ("How many inhabitants does {E} have?",
                       "What number of residents does {E} have?",
                       "How many residents are counted in {E}?"),
    },
    "region": {
        "country": ("Which country is {E} in?", "To what country does {E} belong?",
                    "Of which country is {E} a part?"),
        "capital": _Q_CAPITAL,
    },
    "country": {
        "language": ("What language is spoken in {E}?", "What is the official tongue of {E}?",
                     "Which language do the people of {E} use?"),
        "capital": _Q_CAPITAL,
        "founded_year": ("In what year did {E} gain independence?",
                         "When was the nation of {E} founded?",
                         "What year did {E} become a sovereign country?"),
    },
    "company": {
        "industry": ("What industry is {E} in?", "What kind of business is {E}?",
                     "In what line of trade does {E} operate?"),
        "founded_year": _Q_FOUNDED,
        "founder": ("Who was the founder of {E}?", "Who is credited with creating {E}?",
                    "Which person started {E}?"),
        "headquarters": ("In which city does {E} have its headquarters?",
                         "Where are the headquarters of {E}?", "In what city is {E} based?"),
    },
    "band": {
        "genre": ("What style of music does {E} perform?",
                  "What musical genre is {E} associated with?",
                  "What kind of music does {E} make?"),
        "founded_year": ("In what year did {E} form?", "When was {E} formed?",
                         "What year did the band {E} get together?"),
        "founder": ("Who started the band {E}?", "Who was the founder of {E}?",
                    "Which musician created {E}?"),
        "origin": ("What city is {E} from?", "Where did {E} originate?",
                   "Which city is the home base of {E}?"),
    },
    "university": {
        "location": ("In which city is {E} situated?", "Where is {E}'s campus?",
                     "In what city do students attend {E}?"),
        "founded_year": _Q_FOUNDED,
        "founder": ("Who was the founder of {E}?", "Who is credited with creating {E}?",
                    "Which person set up the institution {E}?"),
    },
    "book": {
        "genre": ("What type of book is {E}?", "What form of writing is {E}?",
                  "What literary form does {E} take?"),
        "author": ("Who is the writer of {E}?", "Who penned {E}?", "Which author created {E}?"),
        "publication_year": ("When was {E} first published?",
                             "In what year did {E} appear in print?",
                             "What is the publication year of {E}?"),
        "publisher": ("Which publisher released {E}?", "Which company printed {E}?",
                      "Who was the publisher of {E}?"),
    },
    "album": {
        "artist": ("Which band recorded {E}?", "Who is the artist behind {E}?",
                   "Which group made the album {E}?"),
        "release_year": _Q_RELEASED,
        "label": ("Which record label put out {E}?", "On what label was {E} issued?",
                  "Which company distributed the album {E}?"),
    },
    "film": {
        "director": ("Who was the director of {E}?", "Who is the filmmaker behind {E}?",
                     "Who directed the film {E}?"),
        "release_year": _Q_RELEASED,
        "studio": ("Which studio made {E}?", "What company was behind the production of {E}?",
                   "Which studio financed {E}?"),
        "filming_location": ("Where was {E} shot?", "In which city did filming of {E} take place?",
                             "What city served as the filming location for {E}?"),
    },
}

# ------------------------------------------------- fact-free filler sentences
FILLERS = {
    "person": (
        "Little is recorded about {p} early schooling.",
        "{S} was described by contemporaries as reserved but generous.",
        "In later life {s} rarely spoke about {p} youth.",
        "{P} letters survive in several private collections.",
        "{S} was fond of long walks in the countryside.",
        "Friends remembered {o} as a patient listener.", "Few photographs of {o} survive.",
        "{S} kept a detailed diary for many years.", "{P} working habits were famously irregular.",
    ),
    "city": (
        "The city is known for its mild winters.",
        "Its old market square is lined with narrow houses.",
        "The surrounding countryside is largely given over to farming.",
        "Several bridges cross the river that runs through the city.",
        "Local festivals take place there every autumn.",
        "The city centre retains much of its original street plan.",
        "Travellers often remark on its quiet streets.",
        "A weekly market has been held there for generations.",
    ),
    "region": (
        "The region is known for its rolling hills.", "Much of the region is covered by forest.",
        "The climate there is generally mild.", "Rivers in the region are used for irrigation.",
        "Rural villages are scattered across the region.",
        "The region attracts walkers in the summer months.",
        "Sheep farming remains common in its uplands.",
        "Its roads are often closed by snow in winter.",
    ),
    "country": (
        "The country has a varied landscape of plains and uplands.",
        "Its flag features a simple geometric design.",
        "Agriculture has long been important to the national economy.",
        "The national cuisine makes heavy use of root vegetables.",
        "Its coastline is dotted with small fishing villages.",
        "The country observes several public holidays in spring.",
        "Railways link most of its larger towns.", "Its people are known for their love of music.",
    ),
    "company": (
        "The company has gone through several changes of ownership.",
        "It is known for its conservative management style.",
        "The firm keeps a small archive of its early records.",
        "Its logo has changed little over the decades.",
        "The company has been the subject of several business case studies.",
        "It employs staff in a number of departments.",
        "The firm has weathered several economic downturns.",
        "Its annual reports are noted for their plain language.",
    ),
    "band": (
        "The band is known for its energetic live shows.",
        "Its line-up has changed several times.", "The group has toured widely.",
        "Critics have praised the band's careful arrangements.",
        "The band rarely gives interviews.", "Its early recordings are now hard to find.",
        "The group often rehearsed in borrowed halls.",
        "Its concerts were known to run late into the night.",
    ),
    "university": (
        "The university is known for its large library.",
        "Its campus includes several historic buildings.",
        "The institution offers courses in the arts and sciences.",
        "Student societies play a large part in campus life.",
        "The university runs a small botanical garden.",
        "Its graduates have gone on to many professions.",
        "Lectures there are open to the public once a year.",
        "The institution has a well-known debating club.",
    ),
    "book": (
        "The book has been reprinted several times.", "Critics were divided on its merits.",
        "It is divided into a number of short chapters.",
        "The work has been translated into several languages.",
        "Its opening pages are often quoted.", "The book is still studied in some schools.",
        "Early editions are sought after by collectors.",
        "Its ending has been the subject of much debate.",
    ),
    "album": (
        "The album features a mix of fast and slow songs.",
        "Its cover artwork became widely recognised.", "Critics gave the record mixed reviews.",
        "The album was reissued with bonus tracks.",
        "It was recorded over a period of several months.",
        "Several of its songs became concert favourites.",
        "The record closes with a long instrumental piece.",
        "Its sleeve notes were written by a close friend of the band.",
    ),
    "film": (
        "The film received mixed reviews on its release.", "Its score was praised by critics.",
        "The film runs for just under two hours.", "It has since gained a loyal following.",
        "Several scenes were shot at night.", "The film was restored for a later re-release.",
        "Its cast included a number of unknown actors.",
        "The production went well over its original budget.",
    ),
}


# ======================================================= the "people" world
# A world of families (see realm.data.world_people): fact templates for the
# person-to-person relations, and the questions asked about them.  A list-valued
# relation ("children") renders its items joined as "A, B and C"; the key
# REL + "/1" holds the wording for a list of one item.
_PEOPLE_BIRTHPLACE = FACT_TEMPLATES["person"]["birthplace"][:3] + (
    "{S} was born in the city of {O}.",)
PEOPLE_FACT_TEMPLATES = {
    "person": {
        "occupation": FACT_TEMPLATES["person"]["occupation"],
        "birth_date": FACT_TEMPLATES["person"]["birth_date"],
        "birthplace": _PEOPLE_BIRTHPLACE,
        "hometown": ("{S} lived in {O}.", "{S} settled in {O}.", "{P} home was in {O}.",
                     "For most of {p} adult life {s} made a home in {O}."),
        "employer": FACT_TEMPLATES["person"]["employer"],
        "spouse": ("{S} was married to {O}.", "{S} and {O} were married.", "{S} wed {O}.",
                   "{O} became {p} spouse."),
        "parents": ("{P} parents were {O}.", "{S} was born to {O}.",
                    "{S} was the child of {O}."),
        "parents/1": ("{P} parent was {O}.", "{S} was raised by {O}.",
                      "{S} was the child of {O}."),
        "children": ("{P} children were {O}.", "{S} had the children {O}.",
                     "{S} was the parent of {O}.", "{S} brought up {O}."),
        "children/1": ("{P} only child was {O}.", "{S} had one child, {O}.",
                       "{S} was the parent of {O}."),
        "siblings": ("{P} siblings were {O}.", "{S} grew up alongside {O}.",
                     "{S} shared a childhood home with {O}."),
        "siblings/1": ("{P} only sibling was {O}.", "{S} had one sibling, {O}.",
                       "{S} grew up alongside {O}."),
        "friends": ("{P} close friends included {O}.", "{S} was close friends with {O}.",
                    "{S} counted {O} among {p} friends."),
        "friends/1": ("{P} closest friend was {O}.", "{S} was a close friend of {O}.",
                      "{S} counted {O} among {p} friends."),
        "colleagues": ("{S} worked alongside {O}.", "{P} colleagues included {O}.",
                       "Among {p} fellow workers were {O}."),
        "colleagues/1": ("{S} worked alongside {O}.", "{P} closest colleague was {O}.",
                         "{S} shared an office with {O}."),
        # mentioned, never asked about: names in an article that answer nothing
        "acquaintances": ("{S} corresponded with {O}.", "{S} was acquainted with {O}.",
                          "{S} often visited {O}.", "{S} met {O} on several occasions."),
    },
    "city": {"founded_year": FACT_TEMPLATES["city"]["founded_year"],
             "population": FACT_TEMPLATES["city"]["population"]},
    "company": FACT_TEMPLATES["company"],
}

PEOPLE_REVERSE_TEMPLATES = {
    "hometown": ("Residents of {T} have included {L}.", "{T} has been home to {L}.",
                 "People who lived in {T} include {L}."),
    **{rel: REVERSE_TEMPLATES[rel] for rel in ("birthplace", "employer", "founder",
                                               "headquarters")},
}

PEOPLE_QUESTION_TEMPLATES = {
    "person": {
        **{rel: QUESTION_TEMPLATES["person"][rel]
           for rel in ("occupation", "birth_date", "birthplace", "employer")},
        "hometown": ("Where did {E} live?", "In which city was {E} living?",
                     "What city did {E} call home?"),
        "spouse": ("Who was {E} married to?", "Who was the spouse of {E}?",
                   "Whom did {E} marry?"),
        "parents": ("Who were the parents of {E}?", "Who are {E}'s mother and father?",
                    "Name a parent of {E}."),
        "children": ("Who are the children of {E}?", "Which sons or daughters did {E} have?",
                     "Name a child of {E}."),
        "siblings": ("Who were the siblings of {E}?", "Which brothers or sisters did {E} have?",
                     "Name a sibling of {E}."),
        "friends": ("Who were {E}'s friends?", "Name a friend of {E}.",
                    "Which people were friends of {E}?"),
        "colleagues": ("Who were {E}'s co-workers?", "Name a colleague of {E}.",
                       "With whom did {E} work?"),
    },
}

PEOPLE_FILLERS = {
    "person": FILLERS["person"] + (
        "{S} was known for a dry sense of humour.", "{P} handwriting was notoriously hard to read.",
        "Neighbours recalled that {s} rose early every morning.",
        "{S} took a keen interest in local history.", "{P} portrait hangs in a family home.",
        "In old age {s} took up gardening.", "{S} travelled abroad only once.",
        "{P} recipes were handed down through the family."),
    "city": FILLERS["city"], "company": FILLERS["company"]}
