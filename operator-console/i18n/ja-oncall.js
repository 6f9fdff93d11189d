// The Japanese messages of the on-call panel's LINE and phone channels (coordinator.html,
// coordinator/oncall.js); merged into i18n/ja.js's by i18n.js. Keys as in i18n/en-oncall.js.

export default {
  'oncall.label.phone': '電話番号（+81…）',
  'oncall.phone': '電話番号 +8190…',
  'oncall.line': 'LINE で通知',
  'oncall.line.linked': 'LINE: 連携済み',
  'oncall.line.notLinked': 'LINE: 未連携',
  'oncall.line.unlink': 'LINE の連携を解除',
  'oncall.line.mine': '自分の LINE で受け取る',
  'oncall.line.how': 'コードを作り、組織の LINE 公式アカウントにそのまま送ってください（10分間、1回だけ有効）。',
  'oncall.line.code': '連携コードを作る',
  'oncall.line.codeIs': 'コード: {code}（{until} まで有効）',
};
