// Tiny message catalogue for the operator console, coordinator view and setup page.
// Japanese is the default; English is the alternative. Elements carrying
// data-i18n="key" (and optionally data-i18n-vars='{"n":1}') are translated by
// applyI18n(); data-i18n-placeholder / -aria-label / -title do the same for attributes.

const catalogue = {
  ja: {
    'app.name': 'つなぐ',
    'app.subtitle': '相談員コンソール',
    'coord.subtitle': 'コーディネーター',
    'setup.subtitle': '初期設定',
    'skip': '本文へ移動',
    'lang.label': '表示言語',

    'login.heading': 'ログイン',
    'login.intro': '相談員・コーディネーター用のアカウントでログインしてください。',
    'login.username': 'ユーザー名',
    'login.password': 'パスワード',
    'login.submit': 'ログイン',
    'login.busy': 'ログインしています…',
    'login.bad': 'ユーザー名またはパスワードが違います。',
    'login.rate': '試行回数が多すぎます。しばらく待ってからもう一度お試しください。',
    'login.network': 'サーバーに接続できません。ネットワークを確認してください。',
    'login.server': 'サーバーでエラーが起きました（{status}）。少し待ってからお試しください。',
    'login.expired': 'セッションの有効期限が切れたか、ログアウトされました。もう一度ログインしてください。',
    'logout': 'ログアウト',
    'signedInAs': '{name} さん',

    'conn.connected': '接続中',
    'conn.connecting': '接続しています…',
    'conn.reconnecting': '再接続しています…',
    'conn.reconnectingIn': '接続が切れました。{s} 秒後に再接続します…',
    'conn.offline': 'オフライン',
    'conn.superseded': '別のタブまたは端末でコンソールが開かれたため、ここでの接続を止めました。',
    'conn.reconnectHere': 'この画面で続ける',
    'conn.version': 'コンソールのバージョンが古いため接続できません。ページを再読み込みしてください。',

    'presence.label': '状態',
    'presence.on_duty': '受付中',
    'presence.away': '離席中',
    'presence.off_duty': '勤務外',
    'presence.load': '対応 {load} / {capacity}',
    'queue.waiting': '待っている人',
    'queue.longest': '最長待ち',
    'queue.none': '—',
    'takeNext': '次の人を受ける',
    'sound.on': '通知音オン',
    'sound.off': '通知音オフ',
    'sound.locked': '通知音を鳴らすには画面を一度クリックしてください',

    'offers.heading': '新しい相談の依頼',
    'offers.empty': 'いま依頼はありません。',
    'offer.title': '新しい相談',
    'offer.transferTitle': '引き継ぎの依頼',
    'offer.waited': '待ち時間 {time}',
    'offer.expires': 'あと {s} 秒',
    'offer.expired': '時間切れ',
    'offer.accept': '受ける',
    'offer.decline': '見送る',
    'offer.from': '{name} さんからの引き継ぎ',
    'offer.note': '引き継ぎメモ',
    'offer.withdrawn.timeout': '依頼の時間が過ぎたため、次の相談員に回しました。',
    'offer.withdrawn.abandoned': '相談者が待つのをやめました。',
    'offer.withdrawn.taken': 'ほかの相談員が対応しました。',

    'channel.web': 'ウェブチャット',
    'channel.line': 'LINE',
    'channel.phone': '電話',

    'langname.ja': '日本語',
    'langname.easy_ja': 'やさしい日本語',
    'langname.ja-easy': 'やさしい日本語',
    'langname.en': '英語',
    'langname.zh': '中国語',
    'langname.zh-CN': '中国語（簡体）',
    'langname.zh-TW': '中国語（繁体）',
    'langname.ko': '韓国語',
    'langname.vi': 'ベトナム語',
    'langname.pt': 'ポルトガル語',
    'langname.es': 'スペイン語',
    'langname.tl': 'タガログ語',
    'langname.fil': 'フィリピノ語',
    'langname.ne': 'ネパール語',
    'langname.id': 'インドネシア語',
    'langname.th': 'タイ語',
    'langname.my': 'ミャンマー語',

    'conv.heading': '対応中の相談',
    'conv.none': '対応中の相談はありません。',
    'conv.label': '相談者 #{code}',
    'conv.unread': '未読 {n} 件',
    'conv.state.active': '対応中',
    'conv.state.wrap_up': '終了処理',
    'conv.state.offered': '依頼中',

    'pane.empty': '左の一覧から相談を選ぶか、「次の人を受ける」を押してください。',
    'pane.visitorGone': '相談者の接続が切れています（戻ってくるのを待っています）。',
    'pane.handover': '引き継ぎメモ',
    'pane.phone': '電話での相談です。会話は電話で行います。',
    'pane.duration': '経過 {time}',
    'typing': '相談者が入力しています…',
    'input.label': 'メッセージ',
    'input.placeholder': 'メッセージを入力（Enterで送信、Shift+Enterで改行）',
    'input.count': '{n} / {max}',
    'input.tooLong': '{max} 文字を超えています。短くしてください。',
    'send': '送信',

    'msg.you': 'あなた',
    'msg.visitor': '相談者',
    'msg.operator': '{name}',
    'msg.pending': '送信中…',
    'msg.sent': '送信済み',
    'msg.failed': '送信できませんでした',
    'msg.retry': 'もう一度送る',
    'msg.toInput': '入力欄に戻す',

    'sys.joined': '{name} さんが対応を始めました',
    'sys.left.requeued': '相談員が退出しました（待機列に戻りました）',
    'sys.left.transferred': '相談員が退出しました（引き継ぎ）',
    'sys.left.other': '相談員が退出しました',
    'sys.ended.visitor': '相談者が会話を終了しました',
    'sys.ended.operator': '相談員が会話を終了しました',
    'sys.ended.system': '会話はシステムにより終了しました',
    'sys.reason.visitor_gone': '（相談者の接続が戻りませんでした）',
    'sys.reason.idle': '（しばらくやりとりがありませんでした）',
    'sys.reason.max_duration': '（最大時間に達しました）',
    'sys.reason.ended': '',

    'tools.label': '支援ツール',
    'tools.phrases': '定型文',
    'tools.directory': '紹介先',
    'tools.close': '閉じる',
    'tools.loading': '読み込んでいます…',
    'tools.loadError': '読み込めませんでした。',
    'tools.retry': '再読み込み',
    'phrases.filter': '定型文を絞り込む',
    'phrases.empty': '該当する定型文はありません。',
    'phrases.hint': '押すと入力欄に入ります。内容を確かめてから送ってください。',
    'directory.search': '紹介先を検索（例: DV、24時間、子ども）',
    'directory.empty': '該当する紹介先はありません。',
    'directory.insert': '入力欄に挿入',
    'directory.phone': '電話',
    'directory.hours': '受付時間',
    'directory.web': 'ウェブ',
    'directory.helps': '相談できること',
    'directory.notes': 'メモ',
    'directory.caution': '情報は団体が確認したものを使ってください。',

    'transfer.button': '引き継ぐ',
    'transfer.title': '相談を引き継ぐ',
    'transfer.for': '{label} を引き継ぎます。',
    'transfer.target': '引き継ぎ先',
    'transfer.queue': '待機列に戻す（次に空いた相談員へ）',
    'transfer.colleague': '{name}（{state}・{load}/{capacity}）',
    'transfer.loading': '相談員の一覧を読み込んでいます…',
    'transfer.noColleagues': 'ほかに受付中の相談員はいません。待機列に戻すことはできます。',
    'transfer.note': '引き継ぎメモ（{max} 文字まで）',
    'transfer.noteHint': 'メモは受け取る相談員にだけ表示され、相談が閉じると消えます。相談者を特定できることは書かないでください。',
    'transfer.submit': '引き継ぐ',
    'transfer.cancel': 'キャンセル',
    'transfer.done': '引き継ぎを依頼しました。',

    'help.button': 'コーディネーターを呼ぶ',
    'help.sent': 'コーディネーターに知らせました。',
    'end.button': '相談を終了',
    'end.question': 'この相談を終了しますか？ 相談者の画面にも終了が表示されます。',
    'end.confirm': '終了する',
    'end.cancel': '戻る',
    'wrapup.heading': '終了処理',
    'wrapup.intro': '相談の分類を選んで記録してください（統計にだけ使われ、内容は残りません）。',
    'wrapup.category': '相談の分類',
    'wrapup.choose': '選んでください',
    'wrapup.submit': '記録して閉じる',
    'wrapup.done': '相談を閉じました。おつかれさまでした。つらい相談のあとは「離席中」にして一息ついてください。',
    'wrapup.rest': '離席中にする',

    'category.loneliness': '孤独・孤立',
    'category.family': '家族',
    'category.school_work': '学校・仕事',
    'category.health': '心と体の健康',
    'category.money': 'お金・生活',
    'category.violence': '暴力・虐待・DV',
    'category.other': 'その他',

    'removed.closed': '{label} の相談は閉じられました。',
    'removed.transferred': '{label} の相談を引き継ぎました。',
    'removed.requeued': '{label} の相談は待機列に戻りました。',
    'removed.gone': '{label} の相談は、接続が切れている間に終了したか待機列に戻りました。',

    'error.bad_json': '送信した内容を受け付けられませんでした。',
    'error.bad_frame': '送信した内容を受け付けられませんでした。',
    'error.unknown_type': 'この操作はサポートされていません。',
    'error.invalid': '入力内容が正しくありません。',
    'error.text_too_long': '文字数が多すぎます（メッセージは4000文字、メモは500文字まで）。',
    'error.out_of_order': 'いまはこの操作はできません。',
    'error.not_found': '相談が見つかりません（すでに終了したか、担当ではありません）。',
    'error.not_found.take_next': 'いま待っている人はいません。',
    'error.capacity': '対応できる上限に達しています。',
    'error.unsupported_version': 'コンソールのバージョンが古いです。ページを再読み込みしてください。',
    'error.unavailable': 'サーバーが一時的に使えません。自動でもう一度送ります。',
    'error.unknown': 'エラーが起きました（{code}）。',
    'error.notConnected': '接続が切れています。再接続してからもう一度お試しください。',
    'error.not_connected': '接続が切れています。再接続してからもう一度お試しください。',
    'error.http': 'サーバーでエラーが起きました（{status}）。',
    'toast.close': '閉じる',

    // coordinator
    'coord.stream.connected': 'ライブ更新中',
    'coord.stream.reconnecting': '再接続しています…',
    'coord.stream.offline': '接続が切れています',
    'coord.forbidden': 'このページはコーディネーターと管理者だけが使えます。相談員の方は相談員コンソールを使ってください。',
    'coord.toConsole': '相談員コンソールへ',
    'coord.queue': '待機',
    'coord.waiting': '待っている人',
    'coord.byChannel': 'チャネル別',
    'coord.longest': '最長待ち時間',
    'coord.operators': '相談員',
    'coord.onDuty': '受付中',
    'coord.away': '離席中',
    'coord.offDuty': '勤務外',
    'coord.busy': '満員',
    'coord.free': '空き枠',
    'coord.conversations': '相談の状況',
    'coord.queued': '待機中',
    'coord.offered': '依頼中',
    'coord.active': '対応中',
    'coord.wrapUp': '終了処理中',
    'coord.today': '今日',
    'coord.started': '開始',
    'coord.closed': '終了',
    'coord.abandoned': '待機中に離脱',
    'coord.alerts': 'ヘルプ要請',
    'coord.noAlerts': 'ヘルプ要請はありません。',
    'coord.alert.help': '{operator} さんがヘルプを求めています',
    'coord.alert.emergency': '{operator} さんが緊急フラグを記録しました',
    'coord.alert.other': '{operator} さんからの通知（{kind}）',
    'coord.alert.conv': '対象: {label}',
    'coord.alert.at': '{time}（{ago}前）',
    'coord.ack': '確認済みにする',
    'coord.acked': '{name} さんが確認済み',
    'coord.ackFailed': '確認を記録できませんでした（{status}）。',
    'coord.thin': '受付中の相談員が {n} 人です（2人未満）。',
    'coord.queueLong': '待っている人が {n} 人います（5人超）。',
    'coord.updated': '最終更新 {time}',
    'coord.unackedTitle': '未確認のヘルプ要請 {n} 件',

    // setup
    'setup.heading': '最初の管理者アカウントを作る',
    'setup.intro': 'ゲートウェイを起動したときに表示された一回限りのセットアップコードを入力してください。',
    'setup.code': 'セットアップコード',
    'setup.username': 'ユーザー名（ログインに使います）',
    'setup.displayName': '表示名（ハンドルネーム。本名は使わないでください）',
    'setup.password': 'パスワード（12文字以上）',
    'setup.confirm': 'パスワード（確認のためもう一度）',
    'setup.submit': '管理者を作成',
    'setup.ok': '管理者アカウントを作成しました。',
    'setup.goConsole': 'コンソールへ進む',
    'setup.err.short': 'パスワードは12文字以上にしてください。',
    'setup.err.mismatch': '確認用のパスワードが一致しません。',
    'setup.err.missing': 'すべての項目を入力してください。',
    'setup.err.400': '入力内容が正しくありません。',
    'setup.err.403': 'セットアップコードが違うか、すでに初期設定が済んでいます。',
    'setup.err.409': 'すでに初期設定が済んでいます。',
    'setup.err.429': '試行回数が多すぎます。しばらく待ってください。',
    'setup.err.other': 'サーバーでエラーが起きました（{status}）。',
    'setup.err.network': 'サーバーに接続できません。',
    'setup.err.code': 'サーバーからのエラー: {code}',
  },
  en: {
    'app.name': 'Tsunagu',
    'app.subtitle': 'Operator console',
    'coord.subtitle': 'Coordinator',
    'setup.subtitle': 'First-run setup',
    'skip': 'Skip to content',
    'lang.label': 'Language',

    'login.heading': 'Sign in',
    'login.intro': 'Sign in with your operator or coordinator account.',
    'login.username': 'Username',
    'login.password': 'Password',
    'login.submit': 'Sign in',
    'login.busy': 'Signing in…',
    'login.bad': 'Wrong username or password.',
    'login.rate': 'Too many attempts. Please wait a little and try again.',
    'login.network': 'Cannot reach the server. Check your network.',
    'login.server': 'The server had an error ({status}). Please try again shortly.',
    'login.expired': 'Your session expired or was signed out. Please sign in again.',
    'logout': 'Sign out',
    'signedInAs': '{name}',

    'conn.connected': 'Connected',
    'conn.connecting': 'Connecting…',
    'conn.reconnecting': 'Reconnecting…',
    'conn.reconnectingIn': 'Connection lost. Reconnecting in {s} s…',
    'conn.offline': 'Offline',
    'conn.superseded': 'The console was opened in another tab or device, so this one stopped.',
    'conn.reconnectHere': 'Continue here',
    'conn.version': 'This console is out of date. Please reload the page.',

    'presence.label': 'Status',
    'presence.on_duty': 'On duty',
    'presence.away': 'Away',
    'presence.off_duty': 'Off duty',
    'presence.load': 'Load {load} / {capacity}',
    'queue.waiting': 'Waiting',
    'queue.longest': 'Longest wait',
    'queue.none': '—',
    'takeNext': 'Take next person',
    'sound.on': 'Sound on',
    'sound.off': 'Sound off',
    'sound.locked': 'Click anywhere once to enable sound',

    'offers.heading': 'Requests',
    'offers.empty': 'No requests right now.',
    'offer.title': 'New conversation',
    'offer.transferTitle': 'Handover request',
    'offer.waited': 'Waited {time}',
    'offer.expires': '{s} s left',
    'offer.expired': 'Expired',
    'offer.accept': 'Accept',
    'offer.decline': 'Decline',
    'offer.from': 'Handover from {name}',
    'offer.note': 'Handover note',
    'offer.withdrawn.timeout': 'The request timed out and went to the next operator.',
    'offer.withdrawn.abandoned': 'The person stopped waiting.',
    'offer.withdrawn.taken': 'Another operator took it.',

    'channel.web': 'Web chat',
    'channel.line': 'LINE',
    'channel.phone': 'Phone',

    'langname.ja': 'Japanese',
    'langname.easy_ja': 'Plain Japanese',
    'langname.ja-easy': 'Plain Japanese',
    'langname.en': 'English',
    'langname.zh': 'Chinese',
    'langname.zh-CN': 'Chinese (Simplified)',
    'langname.zh-TW': 'Chinese (Traditional)',
    'langname.ko': 'Korean',
    'langname.vi': 'Vietnamese',
    'langname.pt': 'Portuguese',
    'langname.es': 'Spanish',
    'langname.tl': 'Tagalog',
    'langname.fil': 'Filipino',
    'langname.ne': 'Nepali',
    'langname.id': 'Indonesian',
    'langname.th': 'Thai',
    'langname.my': 'Burmese',

    'conv.heading': 'Your conversations',
    'conv.none': 'No conversations.',
    'conv.label': 'Person #{code}',
    'conv.unread': '{n} unread',
    'conv.state.active': 'Active',
    'conv.state.wrap_up': 'Wrap-up',
    'conv.state.offered': 'Offered',

    'pane.empty': 'Pick a conversation on the left, or press “Take next person”.',
    'pane.visitorGone': 'The person’s connection dropped (waiting for them to come back).',
    'pane.handover': 'Handover note',
    'pane.phone': 'This is a phone conversation; talk on the phone.',
    'pane.duration': 'Duration {time}',
    'typing': 'The person is typing…',
    'input.label': 'Message',
    'input.placeholder': 'Type a message (Enter sends, Shift+Enter for a new line)',
    'input.count': '{n} / {max}',
    'input.tooLong': 'Longer than {max} characters. Please shorten it.',
    'send': 'Send',

    'msg.you': 'You',
    'msg.visitor': 'Person',
    'msg.operator': '{name}',
    'msg.pending': 'Sending…',
    'msg.sent': 'Sent',
    'msg.failed': 'Not sent',
    'msg.retry': 'Send again',
    'msg.toInput': 'Back to input',

    'sys.joined': '{name} joined',
    'sys.left.requeued': 'The operator left (back to the queue)',
    'sys.left.transferred': 'The operator left (handover)',
    'sys.left.other': 'The operator left',
    'sys.ended.visitor': 'The person ended the conversation',
    'sys.ended.operator': 'The operator ended the conversation',
    'sys.ended.system': 'The conversation was ended by the system',
    'sys.reason.visitor_gone': ' (the person’s connection did not come back)',
    'sys.reason.idle': ' (no messages for a long time)',
    'sys.reason.max_duration': ' (maximum duration reached)',
    'sys.reason.ended': '',

    'tools.label': 'Tools',
    'tools.phrases': 'Phrases',
    'tools.directory': 'Referrals',
    'tools.close': 'Close',
    'tools.loading': 'Loading…',
    'tools.loadError': 'Could not load.',
    'tools.retry': 'Reload',
    'phrases.filter': 'Filter phrases',
    'phrases.empty': 'No matching phrases.',
    'phrases.hint': 'Click to put it in the input. Check it before sending.',
    'directory.search': 'Search referrals (e.g. DV, 24h, child)',
    'directory.empty': 'No matching organisations.',
    'directory.insert': 'Insert',
    'directory.phone': 'Phone',
    'directory.hours': 'Hours',
    'directory.web': 'Web',
    'directory.helps': 'Helps with',
    'directory.notes': 'Notes',
    'directory.caution': 'Use only entries your organisation has verified.',

    'transfer.button': 'Hand over',
    'transfer.title': 'Hand over the conversation',
    'transfer.for': 'Handing over {label}.',
    'transfer.target': 'Hand over to',
    'transfer.queue': 'Back to the queue (next free operator)',
    'transfer.colleague': '{name} ({state}, {load}/{capacity})',
    'transfer.loading': 'Loading colleagues…',
    'transfer.noColleagues': 'No other operator is on duty. You can still send it back to the queue.',
    'transfer.note': 'Handover note (up to {max} characters)',
    'transfer.noteHint': 'Only the receiving operator sees the note; it is deleted when the conversation closes. Do not write anything that identifies the person.',
    'transfer.submit': 'Hand over',
    'transfer.cancel': 'Cancel',
    'transfer.done': 'Handover requested.',

    'help.button': 'Ask coordinator',
    'help.sent': 'The coordinator has been told.',
    'end.button': 'End',
    'end.question': 'End this conversation? The person will see that it ended.',
    'end.confirm': 'End it',
    'end.cancel': 'Back',
    'wrapup.heading': 'Wrap-up',
    'wrapup.intro': 'Choose a category (used only for statistics; no content is kept).',
    'wrapup.category': 'Category',
    'wrapup.choose': 'Choose…',
    'wrapup.submit': 'Record and close',
    'wrapup.done': 'Conversation closed. Thank you. After a hard one, set yourself “Away” and take a breath.',
    'wrapup.rest': 'Set away',

    'category.loneliness': 'Loneliness / isolation',
    'category.family': 'Family',
    'category.school_work': 'School / work',
    'category.health': 'Physical and mental health',
    'category.money': 'Money / living',
    'category.violence': 'Violence / abuse / DV',
    'category.other': 'Other',

    'removed.closed': 'The conversation with {label} was closed.',
    'removed.transferred': 'The conversation with {label} was handed over.',
    'removed.requeued': 'The conversation with {label} went back to the queue.',
    'removed.gone': 'The conversation with {label} ended or went back to the queue while you were disconnected.',

    'error.bad_json': 'The server could not accept what was sent.',
    'error.bad_frame': 'The server could not accept what was sent.',
    'error.unknown_type': 'This action is not supported.',
    'error.invalid': 'Something in the input is not valid.',
    'error.text_too_long': 'Too long (messages up to 4000 characters, notes up to 500).',
    'error.out_of_order': 'That is not possible right now.',
    'error.not_found': 'Conversation not found (it ended or is not yours).',
    'error.not_found.take_next': 'Nobody is waiting right now.',
    'error.capacity': 'You are at your capacity.',
    'error.unsupported_version': 'This console is out of date. Please reload the page.',
    'error.unavailable': 'The server is briefly unavailable. It will be retried automatically.',
    'error.unknown': 'An error occurred ({code}).',
    'error.notConnected': 'Not connected. Try again once reconnected.',
    'error.not_connected': 'Not connected. Try again once reconnected.',
    'error.http': 'The server had an error ({status}).',
    'toast.close': 'Dismiss',

    'coord.stream.connected': 'Live',
    'coord.stream.reconnecting': 'Reconnecting…',
    'coord.stream.offline': 'Disconnected',
    'coord.forbidden': 'This page is for coordinators and administrators only. Operators, please use the operator console.',
    'coord.toConsole': 'Operator console',
    'coord.queue': 'Queue',
    'coord.waiting': 'Waiting',
    'coord.byChannel': 'By channel',
    'coord.longest': 'Longest wait',
    'coord.operators': 'Operators',
    'coord.onDuty': 'On duty',
    'coord.away': 'Away',
    'coord.offDuty': 'Off duty',
    'coord.busy': 'Busy (full)',
    'coord.free': 'Free capacity',
    'coord.conversations': 'Conversations',
    'coord.queued': 'Queued',
    'coord.offered': 'Offered',
    'coord.active': 'Active',
    'coord.wrapUp': 'Wrap-up',
    'coord.today': 'Today',
    'coord.started': 'Started',
    'coord.closed': 'Closed',
    'coord.abandoned': 'Left while waiting',
    'coord.alerts': 'Help requests',
    'coord.noAlerts': 'No help requests.',
    'coord.alert.help': '{operator} is asking for help',
    'coord.alert.emergency': '{operator} recorded an emergency flag',
    'coord.alert.other': 'From {operator} ({kind})',
    'coord.alert.conv': 'Conversation: {label}',
    'coord.alert.at': '{time} ({ago} ago)',
    'coord.ack': 'Acknowledge',
    'coord.acked': 'Acknowledged by {name}',
    'coord.ackFailed': 'Could not acknowledge ({status}).',
    'coord.thin': 'Only {n} operator(s) on duty (fewer than 2).',
    'coord.queueLong': '{n} people waiting (more than 5).',
    'coord.updated': 'Updated {time}',
    'coord.unackedTitle': '{n} unacknowledged help request(s)',

    'setup.heading': 'Create the first administrator',
    'setup.intro': 'Enter the one-time setup code the gateway printed when it started.',
    'setup.code': 'Setup code',
    'setup.username': 'Username (for signing in)',
    'setup.displayName': 'Display name (a handle, not your legal name)',
    'setup.password': 'Password (at least 12 characters)',
    'setup.confirm': 'Password again',
    'setup.submit': 'Create administrator',
    'setup.ok': 'The administrator account was created.',
    'setup.goConsole': 'Go to the console',
    'setup.err.short': 'The password must have at least 12 characters.',
    'setup.err.mismatch': 'The two passwords do not match.',
    'setup.err.missing': 'Please fill in every field.',
    'setup.err.400': 'Something in the input is not valid.',
    'setup.err.403': 'Wrong setup code, or setup has already been done.',
    'setup.err.409': 'Setup has already been done.',
    'setup.err.429': 'Too many attempts. Please wait.',
    'setup.err.other': 'The server had an error ({status}).',
    'setup.err.network': 'Cannot reach the server.',
    'setup.err.code': 'Server error: {code}',
  },
};

export const LANGS = Object.keys(catalogue);
const STORAGE_KEY = 'tsunagu.console.lang';
let current = 'ja';
try {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved && catalogue[saved]) current = saved;
} catch (_) { /* storage unavailable: stay with ja */ }

const listeners = new Set();

export function getLang() { return current; }

export function has(key) {
  return Object.prototype.hasOwnProperty.call(catalogue[current], key) ||
    Object.prototype.hasOwnProperty.call(catalogue.ja, key);
}

/** Translate key, replacing {name} placeholders with vars. Unknown keys return the key. */
export function t(key, vars) {
  let s = catalogue[current][key];
  if (s === undefined) s = catalogue.ja[key];
  if (s === undefined) return key;
  if (vars) {
    s = s.replace(/\{(\w+)\}/g, (m, name) => (vars[name] === undefined || vars[name] === null ? m : String(vars[name])));
  }
  return s;
}

/** Set text of el from key (and remember it so a language switch re-translates it). */
export function setText(el, key, vars) {
  el.dataset.i18n = key;
  if (vars) el.dataset.i18nVars = JSON.stringify(vars);
  else delete el.dataset.i18nVars;
  el.textContent = t(key, vars);
  return el;
}

function varsOf(el) {
  const raw = el.dataset.i18nVars;
  if (!raw) return undefined;
  try { return JSON.parse(raw); } catch (_) { return undefined; }
}

export function applyI18n(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n, varsOf(el));
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll('[data-i18n-aria-label]')) el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
}

export function setLang(lang) {
  if (!catalogue[lang]) return;
  current = lang;
  try { localStorage.setItem(STORAGE_KEY, lang); } catch (_) { /* ignore */ }
  document.documentElement.lang = lang;
  applyI18n(document);
  for (const fn of listeners) {
    try { fn(lang); } catch (e) { console.error(e); }
  }
}

export function onLangChange(fn) { listeners.add(fn); }

/** Wire a <select> as the language switch and translate the page once. */
export function initI18n(select) {
  document.documentElement.lang = current;
  if (select) {
    select.value = current;
    select.addEventListener('change', () => setLang(select.value));
  }
  applyI18n(document);
}
