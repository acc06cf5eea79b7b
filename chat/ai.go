package chat

import "strings"

// cim's "AI mode" is a local joke bot: it answers your line with the line
// itself rewritten, turning a question into an answer ("你好吗?" → "我好!").
// Nothing is sent while it is on. The rules are cim's — drop 吗 and 嘛,
// ? becomes !, 你 becomes 我 — and the full-width ？ too.
var aiRules = strings.NewReplacer(
	"吗", "", "嘛", "",
	"?", "!", "？", "！",
	"你", "我",
)

// AIAnswer is the bot's answer to line.
func AIAnswer(line string) string { return strings.TrimSpace(aiRules.Replace(line)) }
