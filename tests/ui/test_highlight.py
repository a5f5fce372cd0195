from ui.highlight import highlight, query_terms, snippet


def test_terms_are_distinct_lowercase_longest_first_without_stopwords():
    assert query_terms("What is the RUNNER's run, run?") == ["runner", "run"]


def test_highlight_marks_whole_words_case_insensitively():
    out = highlight("Running a run. RUN again", "run")
    assert out == "Running a <mark>run</mark>. <mark>RUN</mark> again"


def test_highlight_escapes_passage_html():
    out = highlight('<script>alert("x")</script> water & salt', "water")
    assert "<script>" not in out
    assert "&lt;script&gt;" in out
    assert "<mark>water</mark> &amp; salt" in out


def test_query_markup_cannot_inject_html():
    out = highlight("an <img> tag", '<img src=x onerror="alert(1)">')
    assert out == "an &lt;<mark>img</mark>&gt; tag"


def test_snippet_cuts_at_a_word_boundary():
    assert snippet("short", 10) == "short"
    assert snippet("one two three four", 9) == "one two …"
