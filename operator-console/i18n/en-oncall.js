// The English messages of the on-call panel's LINE and phone channels (coordinator.html,
// coordinator/oncall.js); merged into i18n/en.js's by i18n.js. Keys as in i18n/ja-oncall.js.

export default {
  'oncall.label.phone': 'Phone number (+81…)',
  'oncall.phone': 'Phone +8190…',
  'oncall.line': 'Alerts by LINE',
  'oncall.line.linked': 'LINE: linked',
  'oncall.line.notLinked': 'LINE: not linked',
  'oncall.line.unlink': 'Unlink LINE',
  'oncall.line.mine': 'Alerts on my own LINE',
  'oncall.line.how': 'Make a code and send it as it is to the organisation\'s LINE official account (valid once, for 10 minutes).',
  'oncall.line.code': 'Make a link code',
  'oncall.line.codeIs': 'Code: {code} (valid until {until})',
};
