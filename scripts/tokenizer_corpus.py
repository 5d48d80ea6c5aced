"""Deterministic text gathered on this machine for the tokenizer scripts.

Shared by make_test_tokenizers.py (training text), make_tokenizer_goldens.py
(test strings) and bench_tokenizer.sh (the 10 MB benchmark corpus). Sources:
the licence texts in /usr/share/common-licenses, a fixed sample of man pages,
C headers from /usr/include, plus the multilingual samples below (CJK, Arabic,
Hindi, Cyrillic, Greek, Thai, emoji, combining marks).
"""
import glob
import gzip
import os

MULTILINGUAL = [
    "东京是日本的首都，人口超过一千三百万。我们今天去公园散步吧。",
    "机器学习模型需要大量的数据来训练，这是一个众所周知的事实。",
    "日本語の文章には、ひらがな、カタカナ、漢字が混在しています。",
    "今日はとても良い天気ですね。明日の会議は午後三時からです。",
    "한국어는 한글이라는 고유한 문자를 사용합니다. 안녕하세요, 반갑습니다!",
    "اللغة العربية هي إحدى أكثر اللغات انتشاراً في العالم، ويتحدثها أكثر من ٤٠٠ مليون شخص.",
    "مرحباً بكم في البرنامج. هل يمكنك مساعدتي في ترجمة هذا النص؟",
    "हिन्दी भारत की राजभाषा है। मैं आज बाज़ार जा रहा हूँ, क्या तुम साथ चलोगे?",
    "नमस्ते! यह एक परीक्षण वाक्य है जिसमें संयुक्त अक्षर क्षत्रिय और ज्ञान हैं।",
    "Русский язык — один из восточнославянских языков. Привет, как дела?",
    "Ελληνικά: Η γλώσσα είναι το σπίτι του είναι. Καλημέρα σας!",
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ สวัสดีครับ ยินดีต้อนรับ",
    "עברית נכתבת מימין לשמאל. שלום עולם!",
    "Tiếng Việt có nhiều dấu thanh: à á ả ã ạ, ơ ư đ. Xin chào các bạn!",
    "Ünïcödé çömbïnïng: e\u0301 a\u0300 o\u0308 n\u0303 vs é à ö ñ; Å\u030a; ﬁ ligature; Ⅻ; ①②③",
    "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇯🇵🇫🇷 ✈️ 1️⃣ #️⃣",
    "Mixed: GPU显存80GB, 价格$1,299.99, 速度3.5倍, temperature=0.7 (温度) — done…",
    "数学: ∑_{i=1}^{n} i² = n(n+1)(2n+1)/6, ∀x∈ℝ, √2 ≈ 1.41421356, π≈3.14159",
    "Français: où est la bibliothèque? Ça coûte 12,50 €. L'été dernier, j'ai vu l'océan.",
    "Deutsch: Die Straße ist groß und schön. Grüße aus München! Äpfel, Öl, Übung.",
    "Español: ¿Dónde está el baño? ¡Qué día tan bonito! El niño comió piña.",
    "Türkçe: İstanbul'da ılık bir gün. Şemsiye, çiçek, ğ.",
    "Code: for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; } // 累加\n\tif (x != NULL) return -1;",
    "def f(x):\n    return {'key': [1, 2, 3], \"v\": None}  # 注释\n\n\nclass A:\n\tpass\r\n",
    "URL https://example.com/path?q=1&lang=zh-CN#frag, mail: user.name+tag@example.org",
    "He said \"it's\" and she'd've known; they're we've I'll you'd WE'LL IT'S Don’t",
]


def _read(path, limit):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read(limit)
        else:
            with open(path, "rb") as f:
                data = f.read(limit)
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError):
        return None


def machine_texts(max_files=400, per_file=40000):
    """Texts from licences, man pages and headers, in a fixed order."""
    paths = sorted(glob.glob("/usr/share/common-licenses/*"))
    man = sorted(glob.glob("/usr/share/man/man1/*.gz"))
    paths += man[:: max(1, len(man) // 150)][:150]
    heads = sorted(glob.glob("/usr/include/*.h"))
    paths += heads[:: max(1, len(heads) // 120)][:120]
    out = []
    for p in paths[:max_files]:
        if os.path.isfile(p):
            t = _read(p, per_file)
            if t:
                out.append(t)
    return out


def training_text():
    texts = machine_texts()
    # Repeat the multilingual samples so their merges are learned.
    texts += MULTILINGUAL * 40
    return texts
